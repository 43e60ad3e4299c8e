"""`status --journal PATH`: where a batch stands, read from its journal (safe while it runs)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .._jobs import JobId, job_id
from .._journal_summary import JobRow, Summary, read_summary, shown
from ._common import EXIT_OK, plain_table, print_json
from ._jobs import load_jobs
from ._options import add_command

if TYPE_CHECKING:
    from ._options import Subparsers

__all__: list[str] = []

_RUNNING_SHOWN = 20
_PHASE_NAMES = {
    "waiting": "waiting to be sent",
    "sending": "sending (POST)",
    "pending": "pending",
    "training": "training",
}


_STATUS_HELP = """\
Summarize a batch's journal: counts, running jobs, durations.

Summarize a batch from its journal: jobs per status, the jobs still running and for
how long, and how long the phases took so far. Read-only and lock-free: safe to run
while the batch runs (a line being written is skipped).
"""


def add_status(subparsers: Subparsers) -> None:
    """`status --journal PATH [--jobs JOBS] [--json]`."""
    parser = add_command(subparsers, "status", _status, _STATUS_HELP)
    parser.add_argument(
        "--journal", type=Path, required=True, metavar="PATH", help="the batch's journal"
    )
    add_journal_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")


def add_journal_options(parser: argparse.ArgumentParser) -> None:
    """`--jobs JOBS`: the jobs file, to count jobs never sent and name keyed jobs."""
    parser.add_argument(
        "--jobs",
        type=Path,
        metavar="JOBS",
        help="the batch's jobs file: counts the jobs not sent yet and names every job",
    )


def summary_for(journal: Path, jobs: Path | None, now: datetime | None = None) -> Summary:
    """The journal's summary, with the jobs file's jobs if given."""
    names: dict[JobId, str] | None = None
    if jobs is not None:
        names = {job_id(job): job.name for job in load_jobs(jobs)}
    return read_summary(journal, now=now, jobs=names)


def _status(args: argparse.Namespace) -> int:
    summary = summary_for(args.journal, args.jobs, datetime.now(UTC))
    if args.json:
        print_json(summary.to_json())
    else:
        print(render(summary, with_jobs_file=args.jobs is not None))
    return EXIT_OK


def render(summary: Summary, *, with_jobs_file: bool) -> str:
    """The status as text: a headline, the counts, the running jobs, the durations."""
    if summary.started_at is None:
        return f"journal {summary.path} is empty: its batch has not begun"
    counts = summary.counts
    lines = [
        f"journal {summary.path}: {len(summary.jobs)} job(s); began {_clock(summary.started_at)}, "
        f"last record {_clock(summary.last_at)} ({_ago(summary, summary.last_at)})",
        f"  done: {counts['active']} active, {counts['failed']} failed, "
        f"{counts['refused']} refused (create refused)",
        f"  open: {counts['watching']} created & watching, {counts['sent']} sent unconfirmed, "
        + (f"{counts['never sent']} never sent" if with_jobs_file else "never sent: see --jobs"),
    ]
    running = summary.running
    if running:
        lines += ["", f"running ({len(running)}):"]
        rows = [_running_row(summary, job) for job in running[:_RUNNING_SHOWN]]
        lines.append(plain_table(["JOB", "NAME", "MODEL ID", "STATUS", "FOR"], rows))
        if len(running) > _RUNNING_SHOWN:
            lines.append(f"… and {len(running) - _RUNNING_SHOWN} more (see --json)")
    durations = [
        [_PHASE_NAMES[name], str(stats.count), human(stats.median), human(stats.max)]
        for name, stats in summary.durations().items()
        if stats.count
    ]
    if durations:
        lines += ["", "durations so far (phases that ended):"]
        lines.append(plain_table(["PHASE", "ENDED", "MEDIAN", "MAX"], durations))
    return "\n".join(lines)


def _running_row(summary: Summary, job: JobRow) -> list[str]:
    return [
        job.label,
        job.name or "-",
        job.model_id or "-",
        shown(job),
        human(summary.for_seconds(job)),
    ]


def human(seconds: float | None) -> str:
    """A duration for people: `40 ms`, `4.2 s`, `12 s`, `3 min 05 s`, `2 h 07 min`, `3 d 04 h`."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 48 * 3600:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def _clock(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(summary: Summary, moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return f"{human(max(0.0, (summary.now - moment).total_seconds()))} ago"
