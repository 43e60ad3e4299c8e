"""`batch`: run a jobs file through `run_batch` with a live view, a journal and a results file."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ._cli_common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    api_parent,
    make_client,
    note,
    read_api_key,
)
from ._cli_jobs import load_jobs, result_rows, write_results
from ._cli_view import PlainLines, live_view, print_summary, rich_available
from .batch import BatchProgress, BatchReport, run_batch
from .client import HappyRobotClient
from .journal import Journal, states_summary
from .types import TrainingJob

if TYPE_CHECKING:
    from ._cli_common import Subparsers

__all__ = ["BatchOutcome", "add_batch", "execute_batch", "wants_live_view"]

#: How often the command looks at the batch (fail-fast, error lines); the view refreshes 4/s.
_TICK = 0.25

_DESCRIPTION = """\
Create and train every job of JOBS, follow each model to active or failed, and
report. JOBS is a JSONL file (one job object per line; blank lines ignored) or a
JSON array of job objects. Job fields: use_case_id, name, from_model_id,
train_sample_ids (list), test_sample_ids (list), explain_tools (optional, default
true), key (optional, your own id for the job). (use_case_id, name) must be unique.
See examples/jobs.jsonl.

The journal makes the batch crash-proof: kill it at any moment (Ctrl-C, a crash,
a reboot) and rerun the same command; it skips finished jobs, re-watches created
models and never creates a model twice. A journal belongs to one jobs file.

Exit status: 0 when every job ended active, 1 when any did not (or --fail-fast
stopped the batch), 2 on usage errors (bad jobs file, no key), 130 on Ctrl-C.
"""


def add_batch(subparsers: Subparsers) -> None:
    """`batch JOBS`: the main job."""
    parser = subparsers.add_parser(
        "batch",
        parents=[api_parent()],
        help="create and train every job of a jobs file",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("jobs", type=Path, metavar="JOBS", help="JSONL or JSON-array jobs file")
    parser.add_argument(
        "--journal",
        type=Path,
        required=True,
        metavar="PATH",
        help="the batch's journal (created if missing; rerun with it to resume)",
    )
    parser.add_argument("--concurrency", type=_positive_int, default=16, metavar="N")
    parser.add_argument(
        "--out", type=Path, metavar="PATH", help="write one JSON line per job, in input order"
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help=(
            "stop at the first job of this run that ends failed or in error: cancel the "
            "rest and exit 1 (nothing is lost: rerun to resume, it stops again only at a "
            "new failure)"
        ),
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="first poll interval of each model (default 2)",
    )
    parser.add_argument(
        "--max-poll-interval",
        type=_positive_float,
        default=None,
        metavar="S",
        help="polls slow down to this while a status is unchanged (default: 15 x "
        "--poll-interval, at most 30)",
    )
    parser.add_argument(
        "--view",
        choices=("auto", "live", "plain"),
        default="auto",
        help="live: rich live view; plain: a line per status change; auto: live on a terminal",
    )
    parser.set_defaults(command=_batch)


@attrs.frozen
class BatchOutcome:
    """How a batch run ended: its report, or the job that stopped a --fail-fast run."""

    report: BatchReport | None
    progress: BatchProgress
    elapsed: float
    stopped_at: str | None = None


def wants_live_view(view: str) -> bool:
    """Whether to show the rich live view for `--view` (auto: on a terminal, if rich is here)."""
    if view == "plain":
        return False
    if view == "live":
        if not rich_available():
            raise UsageError("--view live needs rich: pip install 'happyrobot-async[cli]'")
        return True
    return sys.stdout.isatty() and rich_available()


def _batch(args: argparse.Namespace) -> int:
    jobs = load_jobs(args.jobs)
    read_api_key(args)  # a missing key is a usage error, before anything starts
    done_before = _replay_journal(args.journal, jobs)
    live = wants_live_view(args.view)
    try:
        outcome = asyncio.run(_run(args, jobs, done_before, live))
    except KeyboardInterrupt:
        note(f"interrupted; journal {args.journal} saved: rerun the same command to resume")
        return EXIT_INTERRUPTED
    if outcome.report is None:
        counts = outcome.progress.counts()
        unfinished = len(outcome.progress.jobs) - outcome.progress.finished
        note(
            f"--fail-fast: stopped after job {outcome.stopped_at} did not end active "
            f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); "
            f"{unfinished} job(s) unfinished; journal {args.journal} saved: rerun to resume"
        )
        return EXIT_FAILED
    report = outcome.report
    if args.out is not None:
        write_results(args.out, result_rows(report, outcome.progress))
    print_summary(report, outcome.elapsed, rich=live)
    if args.out is not None:
        note(f"results: {args.out}")
    return EXIT_OK if report.ok else EXIT_FAILED


async def _run(
    args: argparse.Namespace, jobs: list[TrainingJob], done_before: set[int], live: bool
) -> BatchOutcome:
    async with make_client(args) as client:
        return await execute_batch(
            client,
            jobs,
            journal=args.journal,
            done_before=done_before,
            concurrency=args.concurrency,
            poll_interval=args.poll_interval,
            max_poll_interval=args.max_poll_interval,
            fail_fast=args.fail_fast,
            live=live,
            title=args.jobs.name,
        )


def _replay_journal(path: Path, jobs: Sequence[TrainingJob]) -> set[int]:
    """Check the journal fits these jobs (JournalError if not); the jobs it has finished."""
    try:
        with Journal.open(path, jobs) as journal:
            states = journal.states
    except OSError as exc:
        raise UsageError(f"cannot use journal {path}: {exc.strerror}") from None
    summary = states_summary(states)
    if summary["new"] < len(jobs):
        note(
            f"resuming from journal {path}: {summary['done']} done, {summary['created']} "
            f"created, {summary['sent']} sent but unconfirmed, {summary['new']} new"
        )
    return {index for index, state in enumerate(states) if state.done}


async def execute_batch(
    client: HappyRobotClient,
    jobs: list[TrainingJob],
    *,
    journal: Path | None,
    done_before: set[int],
    concurrency: int,
    poll_interval: float,
    max_poll_interval: float | None,
    fail_fast: bool,
    live: bool,
    title: str,
) -> BatchOutcome:
    """Run the batch under a live view or plain lines; cancellation reaches run_batch."""
    progress = BatchProgress()
    if max_poll_interval is None:
        max_poll_interval = max(poll_interval, min(30.0, 15 * poll_interval))
    lines = None if live else PlainLines(progress, done_before)
    started = time.monotonic()
    task = asyncio.create_task(
        run_batch(
            client,
            jobs,
            concurrency=concurrency,
            journal=journal,
            on_change=lines.on_change if lines is not None else None,
            progress=progress,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )
    )
    stopped_at: str | None = None
    view: AbstractContextManager[None] = live_view(progress, title) if live else nullcontext()
    try:
        with view:
            while not task.done():
                await asyncio.wait([task], timeout=_TICK)
                if lines is not None:
                    lines.check_errors()
                if fail_fast and not task.done():
                    stopped_at = _new_failure(progress, done_before)
                    if stopped_at is not None:
                        break
    finally:
        # Ctrl-C cancels us; run_batch must be cancelled too, so its journal is closed.
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    elapsed = time.monotonic() - started
    if task.cancelled():
        return BatchOutcome(None, progress, elapsed, stopped_at)
    return BatchOutcome(task.result(), progress, elapsed)


def _new_failure(progress: BatchProgress, done_before: set[int]) -> str | None:
    """The first job that failed in this run (failures replayed from the journal don't count)."""
    for index, row in enumerate(progress.jobs):
        if index not in done_before and row.state in ("failed", "error"):
            return row.job.label
    return None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value
