"""Running one batch for `batch` and `demo`: `run_batch` under a view, with `--fail-fast`.

Everything reacts to `run_batch`'s callbacks, not to a timer: status changes
and error results become plain lines as they happen, and `--fail-fast` cancels
the run at the first result that is not active.
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import attrs

from .. import BatchProgress, BatchReport, BatchResult, run_batch
from ..client import HappyRobotClient
from ..types import TrainingJob
from ._common import UsageError
from ._view import PlainLines, live_view, rich_available

__all__: list[str] = []


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


class _FailFast:
    """Resolves `stopped` with the label of the first job of this run not to end active."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stopped: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_result(self, result: BatchResult) -> None:
        # failed training and errors alike; run_batch reports no job the journal had finished
        if self.enabled and not result.ok and not self.stopped.done():
            self.stopped.set_result(result.job.label)


async def execute_batch(
    client: HappyRobotClient,
    jobs: list[TrainingJob],
    *,
    journal: Path | None,
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
    lines = None if live else PlainLines(progress)
    fail = _FailFast(fail_fast)

    def on_result(result: BatchResult) -> None:
        if lines is not None:
            lines.on_result(result)
        fail.on_result(result)

    started = time.monotonic()
    task = asyncio.create_task(
        run_batch(
            client,
            jobs,
            concurrency=concurrency,
            journal=journal,
            on_change=lines.on_change if lines is not None else None,
            on_result=on_result,
            progress=progress,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )
    )
    view: AbstractContextManager[None] = live_view(progress, title) if live else nullcontext()
    try:
        with view:
            ends: list[asyncio.Future[Any]] = [task, fail.stopped]
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # --fail-fast or Ctrl-C: run_batch must be cancelled too, so its journal is closed.
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    elapsed = time.monotonic() - started
    if task.cancelled():
        stopped_at = fail.stopped.result() if fail.stopped.done() else None
        return BatchOutcome(None, progress, elapsed, stopped_at)
    return BatchOutcome(task.result(), progress, elapsed)
