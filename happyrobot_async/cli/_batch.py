"""`batch`: run a jobs file through `run_batch` with a live view, a journal and a results file.

This module owns the command's contract: reading the jobs file and the journal
before anything is sent (their problems are usage errors), the exit status, and
the results file; `_execute` runs the batch itself.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..journal import Journal, states_summary
from ..types import TrainingJob
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    api_parent,
    make_client,
    note,
    read_api_key,
)
from ._execute import BatchOutcome, execute_batch, wants_live_view
from ._jobs import load_jobs, result_rows, write_results
from ._view import print_summary

if TYPE_CHECKING:
    from ._common import Subparsers

__all__: list[str] = []

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


def _batch(args: argparse.Namespace) -> int:
    jobs = load_jobs(args.jobs)
    read_api_key(args)  # a missing key is a usage error, before anything starts
    _check_journal(args.journal, jobs)
    live = wants_live_view(args.view)
    try:
        outcome = asyncio.run(_run(args, jobs, live))
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


async def _run(args: argparse.Namespace, jobs: list[TrainingJob], live: bool) -> BatchOutcome:
    async with make_client(args) as client:
        return await execute_batch(
            client,
            jobs,
            journal=args.journal,
            concurrency=args.concurrency,
            poll_interval=args.poll_interval,
            max_poll_interval=args.max_poll_interval,
            fail_fast=args.fail_fast,
            live=live,
            title=args.jobs.name,
        )


def _check_journal(path: Path, jobs: Sequence[TrainingJob]) -> None:
    """Check the journal fits these jobs (JournalError if not); say what a resume picks up."""
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
