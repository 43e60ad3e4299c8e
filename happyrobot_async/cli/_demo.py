"""`demo`: a whole batch against the embedded simulator, so a new user sees the flow keyless.

The simulator is imported only when the command runs, so no other command
loads `happyrobot_async.testing`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .._journal_summary import read_summary
from ..client import HappyRobotClient
from ..types import TrainingJob
from ._common import EXIT_OK, UsageError, note
from ._execute import execute_batch, wants_live_view
from ._options import add_command, add_log_options, add_rate_limit, finite_positive, positive_int
from ._report import write_report
from ._view import print_summary

if TYPE_CHECKING:
    from ..testing import Simulator
    from ._options import Subparsers

__all__: list[str] = []

_AGENTS = (
    "Carrier sales",
    "Appointment scheduling",
    "Load tracking",
    "Driver check-in",
    "Rate negotiation",
    "Customer support",
    "Dispatch updates",
)
_VARIANTS = ("v2", "v2 Spanish", "v3 concise")
_REAL_RUN = (
    "export HAPPYROBOT_API_KEY=...; happyrobot-async batch examples/jobs.jsonl "
    "--journal run.journal --out results.jsonl"
)


_DEMO_HELP = """\
Run a sample batch against the embedded simulator (no API key needed).

Start the API simulator in this process, train 20 sample models over its 3 use cases
with the live view (about 15 s; some fail on purpose), then print the summary, write
the batch's HTML report and show how to run the same against the real API.
"""


def add_demo(subparsers: Subparsers) -> None:
    """`demo`: no key, no network, about 15 seconds."""
    parser = add_command(subparsers, "demo", _demo, _DEMO_HELP)
    parser.add_argument(
        "--jobs", type=positive_int, default=20, help="how many sample jobs (default 20)"
    )
    parser.add_argument("--seed", type=int, default=6, help="the simulator's seed")
    parser.add_argument(
        "--speed",
        type=finite_positive,
        default=1.0,
        help="simulated seconds per real second (default 1)",
    )
    parser.add_argument(
        "--view", choices=("auto", "live", "plain"), default="auto", help="as for `batch`"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("happyrobot-demo-report.html"),
        metavar="PATH",
        help="where to write the batch's HTML report (default: ./happyrobot-demo-report.html)",
    )
    add_rate_limit(parser, defaults=False)
    add_log_options(parser, defaults=False)


def demo_jobs(sim: Simulator, count: int, seed: int) -> list[TrainingJob]:
    """`count` plausible jobs spread over the simulator's use cases."""
    rng = random.Random(seed)
    use_cases = sim.use_case_ids
    jobs = []
    for number in range(count):
        use_case = use_cases[number % len(use_cases)]
        agent = _AGENTS[(number // len(use_cases)) % len(_AGENTS)]
        variant = _VARIANTS[number // (len(use_cases) * len(_AGENTS)) % len(_VARIANTS)]
        name = f"{agent} {variant}"
        if number >= len(use_cases) * len(_AGENTS) * len(_VARIANTS):
            name += f" #{number + 1}"
        jobs.append(
            TrainingJob(
                use_case_id=use_case,
                name=name,
                from_model_id=rng.choice(sim.base_model_ids(use_case)),
                train_sample_ids=[f"{rng.getrandbits(96):024x}" for _ in range(rng.randint(3, 8))],
                test_sample_ids=[f"{rng.getrandbits(96):024x}" for _ in range(2)],
                key=f"demo-{number + 1:02d}",
            )
        )
    return jobs


def _demo(args: argparse.Namespace) -> int:
    live = wants_live_view(args.view)
    asyncio.run(_run(args, live))
    return EXIT_OK


async def _run(args: argparse.Namespace, live: bool) -> None:
    from ..testing import Simulator

    simulator = Simulator(
        seed=args.seed,
        speed=args.speed,
        failure_rate=0.15,
        pending_seconds=(1.0, 3.0),
        training_seconds=(3.0, 10.0),
    )
    async with simulator as sim:
        jobs = demo_jobs(sim, max(1, args.jobs), args.seed)
        note(
            f"Simulator running at {sim.base_url} ({len(sim.use_case_ids)} use cases); "
            f"training {len(jobs)} models, about 15% of them fail on purpose."
        )
        # Poll faster than the real API needs: the simulator is on this machine.
        poll = max(0.02, 0.5 / max(args.speed, 0.01))
        with tempfile.TemporaryDirectory(prefix="happyrobot-demo-") as scratch:
            client = HappyRobotClient(
                api_key=sim.api_key, base_url=sim.base_url, rate_limit=args.rate_limit
            )
            journal = Path(scratch) / "demo.journal"
            async with client:
                outcome = await execute_batch(
                    client,
                    jobs,
                    journal=journal,
                    concurrency=8,
                    poll_interval=poll,
                    max_poll_interval=4 * poll,
                    fail_fast=False,
                    live=live,
                    title="demo",
                )
            assert outcome.report is not None  # no --fail-fast here
            print_summary(outcome.report, outcome.elapsed, rich=live)
            report = await asyncio.to_thread(_write_report, journal, args.report)
        stats = sim.stats
    print(
        f"\nThe simulator saw {stats.total_requests} requests and holds {stats.models_created} "
        f"new models, {stats.duplicates} duplicated.\n"
        "Run the same against the real API:\n"
        f"  {_REAL_RUN}\n"
        "(the jobs file format is in examples/jobs.jsonl; kill the batch at any moment and "
        "rerun it: the journal resumes it without creating a model twice)"
    )
    if report is not None:
        print(f"\nThe report of this batch (timeline, durations, failures): {report}")


def _write_report(journal: Path, path: Path) -> Path | None:
    """The batch's HTML report, written from its journal; None (and why) if it cannot be."""
    try:
        return write_report(read_summary(journal), path)
    except UsageError as exc:  # plotly missing, or an unwritable --report
        note(f"no report: {exc}")
        return None
