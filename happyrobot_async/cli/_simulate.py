"""`simulate`: serve the API simulator from the command line until interrupted.

Benchmarks and manual tests point a client at it. The simulator and the fault
classes are imported inside the functions that need them, which run only for
this command, so no other command loads `happyrobot_async.testing`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..testing import Fault, Simulator
    from ._common import Subparsers

__all__: list[str] = []


def add_simulate(subparsers: Subparsers) -> None:
    """`simulate`: print how to reach the simulator, then serve until SIGINT or SIGTERM."""
    parser = subparsers.add_parser(
        "simulate",
        help="run the API simulator until interrupted",
        description=(
            "Run the API simulator. Prints `key: value` lines (base_url, api_key, "
            "organization_id, use_case_ids, base_model_ids, stats_url), then serves "
            "until SIGINT or SIGTERM."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0, help="sim seconds per real second")
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--pending", type=_float_range, default=(1.0, 3.0), metavar="LOW,HIGH")
    parser.add_argument("--training", type=_float_range, default=(3.0, 10.0), metavar="LOW,HIGH")
    parser.add_argument("--use-cases", type=int, default=3)
    parser.add_argument("--rate-limit-rps", type=float, default=None)
    parser.add_argument("--extra-fields", action="store_true")
    parser.add_argument(
        "--optional-fields", choices=("present", "omitted", "null"), default="present"
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=parse_fault,
        default=[],
        metavar="KIND:RATE[:ROUTE][:K=V...]",
        help="inject a fault, e.g. commit_then_fail:0.2:then=500 (repeatable)",
    )
    parser.set_defaults(command=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from ..testing import Simulator

    simulator = Simulator(
        seed=args.seed,
        host=args.host,
        port=args.port,
        speed=args.speed,
        failure_rate=args.failure_rate,
        pending_seconds=args.pending,
        training_seconds=args.training,
        use_cases=args.use_cases,
        rate_limit_rps=args.rate_limit_rps,
        extra_fields=args.extra_fields,
        optional_fields=args.optional_fields,
        faults=args.faults,
    )
    asyncio.run(_serve(simulator))
    return 0


async def _serve(sim: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with sim:
            base_models = [m for uc in sim.use_case_ids for m in sim.base_model_ids(uc)]
            lines = {
                "base_url": sim.base_url,
                "api_key": sim.api_key,
                "organization_id": sim.organization_id,
                "use_case_ids": ",".join(sim.use_case_ids),
                "base_model_ids": ",".join(base_models),
                "stats_url": sim.stats_url,
            }
            for key, value in lines.items():
                print(f"{key}: {value}")
            sys.stdout.flush()
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _float_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(",")
    if not sep:
        raise argparse.ArgumentTypeError("expected LOW,HIGH")
    return (float(low), float(high))


_PARAM_TYPES: dict[str, Callable[[str], Any]] = {
    "delay": float,
    "retry_after": lambda text: None if text.lower() == "none" else float(text),
    "status": int,
    "html": lambda text: text.lower() in ("1", "true", "yes"),
    "then": lambda text: text if text == "drop" else int(text),
    "location": str,
    "body": json.loads,
    "size": int,
    "model_id": str,
}


def parse_fault(text: str) -> Fault:
    """Parse `KIND:RATE[:ROUTE][:K=V...]` (a value may itself contain colons, like a URL)."""
    from ..testing import Fault
    from ..testing._faults import ROUTES

    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    try:
        rate = float(parts.pop(0)) if parts else 1.0
        route: str | None = None
        params: dict[str, str] = {}
        last: str | None = None
        for part in parts:
            if "=" in part and part.split("=", 1)[0] in _PARAM_TYPES:
                last, value = part.split("=", 1)
                params[last] = value
            elif last is None and route is None and part in ROUTES:
                route = part
            elif last is not None:
                params[last] += ":" + part
            else:
                raise ValueError(f"unexpected {part!r}")
        converted = {key: _PARAM_TYPES[key](value) for key, value in params.items()}
        return Fault(kind, rate, route, **converted)  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"bad fault {text!r}: {error}") from None
