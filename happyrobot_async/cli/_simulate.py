"""`simulate`: serve the API simulator from the command line until interrupted.

Benchmarks and manual tests point a client at it. The simulator and the fault
classes are imported inside the functions that need them, which run only for
this command, so no other command loads `happyrobot_async.testing`; the help
therefore spells the timestamp formats out itself (a test keeps them equal to
the simulator's), and `_faultspec` writes the fault kinds only when it is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import math
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from ._common import UsageError, note
from ._faultspec import FAULT_HELP, FaultHelpFormatter, parse_fault
from ._options import add_command, add_log_options, number_type

if TYPE_CHECKING:
    from ..testing import Simulator
    from ._options import Subparsers

__all__: list[str] = []

#: The simulator's timestamp formats (`--timestamp-format`).
TIMESTAMP_FORMATS = ("Z", "z", "+00:00", "fraction")
#: Hosts that listen on every interface, and the loopback address a client here uses.
_ALL_INTERFACES = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
#: `--clock-offset`'s type.
_finite_float = number_type(float, math.isfinite, "must be a finite number")


_SIMULATE_HELP = """\
Run the API simulator until interrupted.

Run the API simulator. Prints `key: value` lines (base_url, api_key, then
forbidden_api_key with --forbidden-key, organization_id, use_case_ids,
base_model_ids, stats_url), then serves until SIGINT or SIGTERM. With --host
0.0.0.0 (or ::) it listens on all interfaces and base_url names this machine's
loopback address (127.0.0.1, or [::1]), which the client accepts.
"""


def add_simulate(subparsers: Subparsers) -> None:
    """`simulate`: print how to reach the simulator, then serve until SIGINT or SIGTERM."""
    parser = add_command(
        subparsers,
        "simulate",
        _simulate,
        _SIMULATE_HELP,
        epilog=FAULT_HELP,
        formatter_class=FaultHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all interfaces)",
    )
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
        "--clock-offset",
        type=_finite_float,
        default=0.0,
        metavar="SECONDS",
        help="the server's clock is this far ahead of real time (negative: behind); "
        "shifts created_at and the Date header",
    )
    parser.add_argument(
        "--timestamp-format",
        choices=TIMESTAMP_FORMATS,
        default="Z",
        help="how created_at is spelled (default Z; fraction: with microseconds)",
    )
    parser.add_argument(
        "--forbidden-key",
        action="store_true",
        help="also make a key of the same organization that gets 403 on every request "
        "(printed as forbidden_api_key)",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=parse_fault,
        default=[],
        metavar="KIND:RATE[:ROUTE][:K=V...]",
        help="inject a fault, e.g. commit_then_fail:0.2:then=500 (repeatable; kinds, "
        "routes and parameters below)",
    )
    add_log_options(parser, defaults=False)


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
        clock_offset=args.clock_offset,
        timestamp_format=args.timestamp_format,
        faults=args.faults,
    )
    asyncio.run(_serve(simulator, forbidden_key=args.forbidden_key))
    return 0


async def _serve(sim: Simulator, *, forbidden_key: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await _start(sim)
        try:
            base_models = [m for uc in sim.use_case_ids for m in sim.base_model_ids(uc)]
            origin = _client_origin(sim.host, sim.port)
            if sim.host in _ALL_INTERFACES:
                note(
                    f"listening on all interfaces ({_address(sim.host or '0.0.0.0', sim.port)}); "
                    f"base_url uses this machine's loopback address"
                )
            lines = {"base_url": origin + sim.base_url.removeprefix(sim.origin)}
            lines["api_key"] = sim.api_key
            if forbidden_key:
                lines["forbidden_api_key"] = sim.add_api_key(sim.organization_id, forbidden=True)
            lines |= {
                "organization_id": sim.organization_id,
                "use_case_ids": ",".join(sim.use_case_ids),
                "base_model_ids": ",".join(base_models),
                "stats_url": origin + sim.stats_url.removeprefix(sim.origin),
            }
            for key, value in lines.items():
                print(f"{key}: {value}")
            sys.stdout.flush()
            await stop.wait()
        finally:
            await sim.close()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _start(sim: Simulator) -> None:
    """Start listening; a port in use (or a bad host) is a one-line usage error."""
    try:
        await sim.start()
    except OSError as exc:
        if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
            reason = exc.strerror or str(exc)
        else:
            reason = os.strerror(exc.errno)
        if exc.errno == errno.EADDRINUSE:
            reason += " (pick another --port, or --port 0 for a free one)"
        raise UsageError(f"cannot listen on {_address(sim.host, sim.port)}: {reason}") from None


def _client_origin(host: str, port: int) -> str:
    """`http://HOST:PORT` for a client on this machine: an all-interfaces host is loopback."""
    return f"http://{_address(_ALL_INTERFACES.get(host, host), port)}"


def _address(host: str, port: int) -> str:
    """`host:port`, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _float_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(",")
    if not sep:
        raise argparse.ArgumentTypeError("expected LOW,HIGH")
    return (float(low), float(high))
