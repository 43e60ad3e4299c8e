"""The `happyrobot-async` command line: one function per subcommand.

API subcommands live in `_cli_models` (create, get, list, wait), `_cli_batch`
(batch) and `_cli_demo` (demo); `simulate` is here. Exit status: 0 success,
1 an API error or a job that did not end active, 2 a usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._cli_batch import add_batch
from ._cli_common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    add_global_options,
    error,
    forget_secrets,
    logging_to_stderr,
)
from ._cli_demo import add_demo
from ._cli_models import add_create, add_get, add_list, add_wait
from .errors import HappyRobotError, InvalidRequestError, JournalError
from .testing import Fault, Simulator

if TYPE_CHECKING:
    from ._cli_common import Subparsers

Command = Callable[[argparse.Namespace], int]

_ROUTES = ("create", "get", "list")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        with logging_to_stderr(args.verbose):
            return command(args)
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    except (InvalidRequestError, JournalError) as exc:
        # refused before anything was done: the command line (or its files) must change
        error(str(exc), one_line=True)
        return EXIT_USAGE
    except HappyRobotError as exc:
        error(f"{type(exc).__name__}: {exc}", one_line=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED
    finally:
        forget_secrets()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="happyrobot-async",
        description=(
            "HappyRobot model-training API tools. The API key comes from "
            "$HAPPYROBOT_API_KEY or --api-key-file (never a command-line argument)."
        ),
    )
    add_global_options(parser, defaults=True)
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


# -- simulate ------------------------------------------------------------------------------


def _add_simulate(subparsers: Subparsers) -> None:
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
}


def parse_fault(text: str) -> Fault:
    """Parse `KIND:RATE[:ROUTE][:K=V...]` (a value may itself contain colons, like a URL)."""
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
            elif last is None and route is None and part in _ROUTES:
                route = part
            elif last is not None:
                params[last] += ":" + part
            else:
                raise ValueError(f"unexpected {part!r}")
        converted = {key: _PARAM_TYPES[key](value) for key, value in params.items()}
        return Fault(kind, rate, route, **converted)  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"bad fault {text!r}: {error}") from None


#: Each adds one subcommand; add yours here.
_SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    add_create,
    add_get,
    add_list,
    add_wait,
    add_batch,
    add_demo,
    _add_simulate,
]
