"""How a running batch looks: a rich live view on a terminal, a line per change otherwise.

Both are fed by `run_batch`: the plain lines by its `on_change` and `on_result`
callbacks, the live view by reading its `BatchProgress` a few times a second.
rich is imported only inside the live view and the rich summary, so everything
else in the CLI works without the `[cli]` extra.

Names repeat across use cases, so every line and row names a job by its key (or,
without one, its use case) next to its name. Model ids are never wrapped or cut:
their columns do not wrap and are 24 wide at least; names give way instead.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from .. import BatchProgress, BatchReport, BatchResult, JobProgress, JobStage
from ..types import MODEL_ID_LENGTH, StatusChange, TrainingJob
from ._common import plain_table

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__: list[str] = []

#: Order and colour of states in the counts line.
_STATES = {
    "queued": "dim",
    "submitting": "cyan",
    "watching": "cyan",
    "pending": "yellow",
    "training": "blue",
    "active": "green",
    "failed": "red",
    "error": "bold red",
}
_FAILED_ROWS_SHOWN = 20
#: Stages of a job that is running (the live view lists those).
_RUNNING = frozenset({JobStage.SUBMITTING, JobStage.WATCHING})


def rich_available() -> bool:
    """True when the `[cli]` extra (rich) is installed."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def who(job: TrainingJob) -> str:
    """A job's key, else its use case: shown next to its name (names repeat across use cases)."""
    return job.key or job.use_case_id


def change_line(change: StatusChange, job: str) -> str:
    """`<time> <job> <name> <model id> <previous> -> <current>` (previous "new" at first)."""
    model = change.model
    previous = change.previous.value if change.previous is not None else "new"
    return f"{_stamp(change.at)} {job} {model.name} {model.id} {previous} -> {model.raw_status}"


class PlainLines:
    """A line per status change: `<time> <job> <name> <model id> <previous> -> <current>`.

    `<job>` is the job's key, else its use case. A job that ends in an error gets
    `<time> <job> <name> <model id or -> -> error: <why>`. Once the output cannot be
    written (its reader left, its disk is full), nothing more is printed and `on_gone`
    gets the error.
    """

    def __init__(
        self,
        progress: BatchProgress,
        out: TextIO | None = None,
        on_gone: Callable[[OSError], object] | None = None,
    ) -> None:
        self._progress = progress
        self._out = out
        self._on_gone = on_gone
        self._gone = False
        self._rows: dict[str, JobProgress] = {}

    def on_change(self, change: StatusChange) -> None:
        """run_batch's `on_change`: print the transition."""
        row = self._row_of(change.model.id)
        self._print(change_line(change, who(row.job) if row else change.model.use_case_id or "-"))

    def on_result(self, result: BatchResult) -> None:
        """run_batch's `on_result`: a line for a job that ended in an error (no change shows it)."""
        row = self._progress.jobs[result.index]
        if row.stage is JobStage.ERROR:
            reason = f": {row.error}" if row.error else ""
            when = _stamp(result.finished_at)
            job = row.job
            self._print(f"{when} {who(job)} {job.name} {row.model_id or '-'} -> error{reason}")

    def _row_of(self, model_id: str) -> JobProgress | None:
        if model_id not in self._rows:
            self._rows = {row.model_id: row for row in self._progress.jobs if row.model_id}
        return self._rows.get(model_id)

    def _print(self, line: str) -> None:
        if self._gone:
            return
        try:
            print(line, file=self._out or sys.stdout, flush=True)
        except OSError as exc:
            self._gone = True
            if self._on_gone is not None:
                self._on_gone(exc)


def _counts_text(progress: BatchProgress) -> list[tuple[str, str, int]]:
    counts = progress.counts()
    ordered = [(state, style, counts.pop(state, 0)) for state, style in _STATES.items()]
    ordered += [(state, "magenta", count) for state, count in sorted(counts.items())]
    return [item for item in ordered if item[2] or item[0] in ("queued", "active", "failed")]


def _render(progress: BatchProgress, started: float, title: str, max_rows: int) -> RenderableType:
    """One frame of the live view: counts per state, a progress bar, the running jobs."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    now = time.monotonic()
    counts = Text(f"{title}  ", style="bold")
    for state, style, count in _counts_text(progress):
        counts.append(f"{state} ", style=style).append(f"{count}   ", style="bold")
    total, finished = len(progress.jobs), progress.finished
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=finished, width=40),
        Text(f"{finished}/{total} finished  {now - started:,.0f} s"),
    )
    running = [row for row in progress.jobs if row.stage in _RUNNING]
    running.sort(key=lambda row: row.started or 0.0)
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("job")  # key or use case, then name: these give way (cut with …)
    table.add_column("name")
    table.add_column("model id", no_wrap=True, min_width=MODEL_ID_LENGTH)
    table.add_column("status", no_wrap=True)
    table.add_column("elapsed", justify="right", no_wrap=True)
    for row in running[:max_rows]:
        style = _STATES.get(row.state, "magenta")
        table.add_row(
            _cut(who(row.job)),
            _cut(row.job.name),
            row.model_id or "-",
            Text(row.state, style=style),
            f"{row.elapsed(now):.1f} s",
        )
    if len(running) > max_rows:
        table.caption = f"… and {len(running) - max_rows} more running"
    return Group(counts, bar, table) if running else Group(counts, bar)


def _cut(text: str) -> RenderableType:
    """One line that shrinks with its (wrappable) column, ending in … when cut."""
    from rich.text import Text

    return Text(text, no_wrap=True, overflow="ellipsis")


@contextmanager
def live_view(
    progress: BatchProgress, title: str, on_gone: Callable[[OSError], object] | None = None
) -> Iterator[None]:
    """Show the live view (refreshed 4 times a second) while the block runs.

    Once stdout's reader has left, the view goes quiet and `on_gone` is called (see
    `_console`).
    """
    from rich.live import Live

    console = _console(on_gone)
    started = time.monotonic()
    max_rows = max(5, console.size.height - 8)
    with Live(
        get_renderable=lambda: _render(progress, started, title, max_rows),
        console=console,
        refresh_per_second=4,
    ):
        yield


def _summary_rows(report: BatchReport) -> list[list[str]]:
    rows = []
    for result in report.results:
        if result.ok:
            continue
        model_id = result.model.id if result.model is not None else "-"
        status = result.model.raw_status if result.model is not None else "error"
        rows.append([result.job.label, result.job.name, model_id, status, str(result.error or "")])
    return rows


def print_summary(report: BatchReport, elapsed: float, *, rich: bool) -> None:
    """Counts per outcome and the jobs that did not end active."""
    counts = report.counts()
    total = len(report.results)
    failed = _summary_rows(report)
    headline = f"{total} job(s) in {elapsed:,.1f} s: " + ", ".join(
        f"{count} {state}" for state, count in sorted(counts.items(), key=_count_order)
    )
    if rich:
        _rich_summary(headline, counts, failed)
        return
    print(headline)
    if failed:
        shown = failed[:_FAILED_ROWS_SHOWN]
        print(plain_table(["JOB", "NAME", "MODEL ID", "STATUS", "ERROR"], shown))
        if len(failed) > len(shown):
            print(f"… and {len(failed) - len(shown)} more (see --out)")


def _count_order(item: tuple[str, int]) -> tuple[int, str]:
    names = list(_STATES)
    return (names.index(item[0]) if item[0] in names else len(names), item[0])


def _console(on_gone: Callable[[OSError], object] | None = None) -> Console:
    """A rich console for stdout that a reader leaving (`| head`) does not end the process.

    Where rich would exit (or end only the live view's refresh thread), it goes quiet
    and calls `on_gone` on the event loop, or without one raises `BrokenPipeError`.
    """
    from rich.console import Console

    loop = asyncio.get_running_loop() if on_gone is not None else None
    loop_thread = threading.get_ident()  # rich's live view also writes from a thread

    class QuietWhenGone(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            gone = BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
            if loop is None or on_gone is None:
                raise gone
            if threading.get_ident() == loop_thread:
                on_gone(gone)
            else:
                loop.call_soon_threadsafe(on_gone, gone)

    return QuietWhenGone()


def _rich_summary(headline: str, counts: dict[str, int], failed: Sequence[list[str]]) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title="Batch summary", title_justify="left")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for state, count in sorted(counts.items(), key=_count_order):
        table.add_row(f"[{_STATES.get(state, 'magenta')}]{state}[/]", str(count))
    console.print(table)
    if failed:
        problems = Table(title="Did not end active", title_justify="left")
        problems.add_column("job", overflow="fold")
        problems.add_column("name", overflow="fold")
        problems.add_column("model id", no_wrap=True, min_width=MODEL_ID_LENGTH)
        problems.add_column("status", no_wrap=True)
        problems.add_column("error", overflow="fold")
        for row in failed[:_FAILED_ROWS_SHOWN]:
            problems.add_row(*row)
        if len(failed) > _FAILED_ROWS_SHOWN:
            problems.caption = f"… and {len(failed) - _FAILED_ROWS_SHOWN} more (see --out)"
        console.print(problems)
    console.print(headline, markup=False, highlight=False)
