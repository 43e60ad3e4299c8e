"""`batch`: run a jobs file through `run_batch` with a live view, a journal and a results file.

This module owns the command's contract: reading the jobs file and the journal
before anything is sent (their problems are usage errors), the exit status, and
the results file; `_execute` runs the batch itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import BatchProgress
from ..errors import JournalError, PreflightError
from ..journal import Journal, states_summary
from ..types import TrainingJob
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    make_client,
    note,
    read_api_key,
)
from ._execute import BatchOutcome, dry_run_batch, execute_batch, some, wants_live_view
from ._jobs import load_jobs
from ._options import add_command, finite_positive, number_type, positive_int
from ._results import ResultsFile
from ._view import print_summary

if TYPE_CHECKING:
    from ._options import Subparsers

__all__: list[str] = []

#: `--deadline`'s type: infinity is allowed, and means none.
_positive_float = number_type(float, lambda value: value > 0, "must be positive")


_BATCH_HELP = """\
Create and train every job of a jobs file.

Create and train every job of JOBS, follow each model to active or failed, and
report. JOBS is a JSONL file (one job object per line; blank lines ignored) or a
JSON array of job objects. Job fields: use_case_id, name, from_model_id,
train_sample_ids (list), test_sample_ids (list), explain_tools (optional, default
true), key (optional, your own id for the job). (use_case_id, name) must be unique.
See examples/jobs.jsonl.

The journal makes the batch crash-proof: kill it at any moment (Ctrl-C, a crash,
a reboot) and rerun the same command; it skips finished jobs, re-watches created
models and never creates a model twice. Jobs are matched to it by key (else use
case and name): add, remove or reorder jobs between runs freely; a job changed
after it was sent is refused by name. One runner at a time per journal.

Before any create, a preflight checks the key, the base URL, each use case and
each from_model_id, and reports every problem at once (exit 2).

Only proof closes a job: a terminal model, or a create refused with 400/404/422
(when no earlier attempt of it was ambiguous). A 401, 403, redirect, network
trouble or an unsettled create leaves it open: the next run takes it up again.

Exit status: 0 when every job ended active, 1 when any did not (or --fail-fast
stopped the batch), 2 on usage errors (bad jobs file, no key, preflight
problems, a journal in use or unusable, an unwritable journal or --out), 130 on
Ctrl-C.
"""


def add_batch(subparsers: Subparsers) -> None:
    """`batch JOBS`: the main job."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = add_command(subparsers, "batch", _batch, _BATCH_HELP, api=True, formatter_class=raw)
    parser.add_argument("jobs", type=Path, metavar="JOBS", help="JSONL or JSON-array jobs file")
    parser.add_argument(
        "--journal",
        type=Path,
        required=True,
        metavar="PATH",
        help="the batch's journal (created if missing; rerun with it to resume)",
    )
    parser.add_argument("--concurrency", type=positive_int, default=16, metavar="N")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="a row per job as it ends, then all of them in input order (JSON lines; "
        "CSV if PATH ends in .csv); checked before anything is sent",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the jobs, the journal and the setup (preflight), print what a run would "
        "do, and create nothing",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="create a new model for each job whose training failed (in an earlier run)",
    )
    parser.add_argument(
        "--retry-errors",
        action="store_true",
        help="create again each job whose create was refused (400/404/422) in an earlier run",
    )
    parser.add_argument(
        "--deadline",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="retry transient failures (network, 5xx, unsettled creates) until this many "
        "seconds after the start; then such a job ends as an error, open for a rerun "
        "(default: keep retrying while the run lasts)",
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
        type=finite_positive,
        default=2.0,
        metavar="S",
        help="first poll interval of each model (default 2)",
    )
    parser.add_argument(
        "--max-poll-interval",
        type=finite_positive,
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


def _batch(args: argparse.Namespace) -> int:
    if args.max_poll_interval is not None and args.max_poll_interval < args.poll_interval:
        raise UsageError("--max-poll-interval must be at least --poll-interval")
    jobs = load_jobs(args.jobs)
    read_api_key(args)  # a missing key is a usage error, before anything starts
    others = {"--journal": args.journal, "JOBS": args.jobs}
    results = ResultsFile(args.out, not_these=others) if args.out is not None else None
    if args.dry_run:
        return dry_run_batch(args, jobs)
    journal = _open_journal(args.journal, jobs)  # locked from here to the end of the run
    try:
        code = _batch_with(args, jobs, journal, results)
    except BaseException:
        with contextlib.suppress(JournalError):
            journal.close()
        raise
    journal.close()
    return code


def _batch_with(
    args: argparse.Namespace, jobs: list[TrainingJob], journal: Journal, results: ResultsFile | None
) -> int:
    live = wants_live_view(args.view)
    progress = BatchProgress()
    try:
        outcome = asyncio.run(_run(args, jobs, live, journal, progress, results))
    except KeyboardInterrupt:
        _finish_results(results, progress)
        note(f"interrupted; journal {args.journal} saved: rerun the same command to resume")
        return EXIT_INTERRUPTED
    except PreflightError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # stdout cannot be written (`| head`, a full disk)
        _finish_results(results, progress)
        note(f"stopped ({exc.strerror or exc}); journal {args.journal} saved: rerun to resume")
        raise
    except BaseException:
        _finish_results(results, progress)
        raise
    _finish_results(results, progress)
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
    print_summary(report, outcome.elapsed, rich=live)
    if report.removed:
        note(
            f"{len(report.removed)} job(s) of the journal are no longer in {args.jobs}, "
            f"left alone: {some(report.removed)}"
        )
    if results is not None:
        note(f"results: {results.path}")
    return EXIT_OK if report.ok else EXIT_FAILED


def _finish_results(results: ResultsFile | None, progress: BatchProgress) -> None:
    """Complete --out in input order; a failed write was already reported as the error."""
    if results is not None and progress.jobs:
        results.finish(progress)


async def _run(
    args: argparse.Namespace,
    jobs: list[TrainingJob],
    live: bool,
    journal: Journal,
    progress: BatchProgress,
    results: ResultsFile | None,
) -> BatchOutcome:
    poll, max_poll = args.poll_interval, args.max_poll_interval
    if max_poll is None:  # 15 intervals, within [poll, 30 s]
        max_poll = max(poll, min(30.0, 15 * poll))
    async with make_client(args) as client:
        return await execute_batch(
            client,
            jobs,
            journal=journal,
            concurrency=args.concurrency,
            poll_interval=poll,
            max_poll_interval=max_poll,
            fail_fast=args.fail_fast,
            live=live,
            title=args.jobs.name,
            progress=progress,
            results=results,
            retry_failed=args.retry_failed,
            retry_errors=args.retry_errors,
            deadline=args.deadline,
        )


def _open_journal(path: Path, jobs: Sequence[TrainingJob]) -> Journal:
    """Lock and replay the journal (JournalError if unusable); say what a resume picks up."""
    journal = Journal.open(path, jobs)
    summary = states_summary(journal, jobs)
    if summary["new"] < len(jobs) or summary["removed"]:
        removed = f", {summary['removed']} no longer in the jobs file" if summary["removed"] else ""
        note(
            f"resuming from journal {path}: {summary['done']} done, {summary['created']} "
            f"created, {summary['sent']} sent but unconfirmed, {summary['new']} new{removed}"
        )
    return journal
