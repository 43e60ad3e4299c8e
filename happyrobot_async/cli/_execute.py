"""Running one batch for `batch` and `demo`: `run_batch` under a view, with `--fail-fast`.

Everything reacts to `run_batch`'s callbacks, not to a timer: status changes
and error results become plain lines as they happen, each ended job's row goes
to `--out`, and the run is cancelled at the first result that is not active
(`--fail-fast`) or at the first `--out` write that fails.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Unpack

import attrs

from .. import BatchProgress, BatchReport, BatchResult, run_batch
from .._outcomes import BatchPlan
from ..batch import BatchOptions
from ..client import HappyRobotClient
from ..errors import PreflightError
from ..types import TrainingJob
from ._common import EXIT_OK, UsageError, make_client
from ._results import ResultsFile
from ._view import PlainLines, live_view, rich_available

__all__: list[str] = []


@attrs.frozen
class BatchOutcome:
    """How a batch run ended: its report, or the job that stopped a --fail-fast run."""

    report: BatchReport | None
    progress: BatchProgress
    elapsed: float
    stopped_at: str | None = None
    out_failed: bool = False
    """The run was stopped because writing `--out` failed."""


def wants_live_view(view: str) -> bool:
    """Whether to show the rich live view for `--view` (auto: on a terminal, if rich is here)."""
    if view == "plain":
        return False
    if view == "live":
        if not rich_available():
            raise UsageError("--view live needs rich: pip install 'happyrobot-async[cli]'")
        return True
    return sys.stdout.isatty() and rich_available()


class _Stops:
    """Resolves `stopped` with why the run must stop early: a job's label, or None (--out,
    or stdout unwritable: then `output_error` says why)."""

    def __init__(self, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.stopped: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.output_error: OSError | None = None

    def on_output_gone(self, error: OSError) -> None:
        self.output_error = error
        self.stop(None)

    def on_result(self, result: BatchResult) -> None:
        # failed training and errors alike; run_batch reports no job the journal had finished
        if self.fail_fast and not result.ok:
            self.stop(result.job.label)

    def stop(self, why: str | None) -> None:
        if not self.stopped.done():
            self.stopped.set_result(why)


async def execute_batch(
    client: HappyRobotClient,
    jobs: list[TrainingJob],
    *,
    fail_fast: bool,
    live: bool,
    title: str,
    results: ResultsFile | None = None,
    **options: Unpack[BatchOptions],
) -> BatchOutcome:
    """Run the batch under a live view or plain lines; cancellation reaches run_batch.

    `options` go to `run_batch`, but for `on_change` and `on_result`, which are the view's.
    Stopped because stdout cannot be written (`| head`, a full disk): that `OSError`,
    once the run ended.
    """
    progress = options.pop("progress", None) or BatchProgress()
    stops = _Stops(fail_fast)
    lines = None if live else PlainLines(progress, on_gone=stops.on_output_gone)

    def on_result(result: BatchResult) -> None:
        if lines is not None:
            lines.on_result(result)
        if results is not None and not results.add(result.index, progress.jobs[result.index]):
            stops.stop(None)
        stops.on_result(result)

    options |= BatchOptions(
        progress=progress,
        on_change=lines.on_change if lines is not None else None,
        on_result=on_result,
    )
    started = time.monotonic()
    task = asyncio.create_task(run_batch(client, jobs, **options))
    view: AbstractContextManager[None] = (
        live_view(progress, title, stops.on_output_gone) if live else nullcontext()
    )
    try:
        with view:
            ends: list[asyncio.Future[Any]] = [task, stops.stopped]
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # --fail-fast, --out or Ctrl-C: run_batch must be cancelled too, so its journal is closed.
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    elapsed = time.monotonic() - started
    if stops.output_error is not None and task.cancelled():  # not once the batch had ended
        raise stops.output_error
    if task.cancelled():
        why = stops.stopped.result() if stops.stopped.done() else None
        return BatchOutcome(None, progress, elapsed, why, out_failed=why is None)
    return BatchOutcome(task.result(), progress, elapsed)


def dry_run_batch(args: argparse.Namespace, jobs: list[TrainingJob]) -> int:
    """Validate, preflight and print the plan; nothing is created, the journal is untouched."""

    async def plan() -> BatchPlan:
        async with make_client(args) as client:
            return await run_batch(
                client,
                jobs,
                journal=args.journal,
                concurrency=args.concurrency,
                retry_failed=args.retry_failed,
                retry_errors=args.retry_errors,
                dry_run=True,
            )

    try:
        result = asyncio.run(plan())
    except PreflightError as exc:
        raise UsageError(str(exc)) from None
    print(f"plan for {args.jobs} with journal {args.journal} (dry run: nothing was created)")
    for name, labels in (
        ("to create", result.create),
        ("to look up (sent, unconfirmed)", result.reconcile),
        ("to re-watch", result.watch),
        ("to retry", result.retry),
        ("already done", result.done),
        ("not in the jobs file (left alone)", result.removed),
    ):
        print(f"  {name}: {len(labels)}" + (f"  ({some(labels)})" if labels else ""))
    print("preflight: key, base URL, use cases and from_model_ids all good")
    return EXIT_OK


def some(labels: Sequence[str], shown: int = 10) -> str:
    """The first `shown` labels, and how many more."""
    more = f", ... ({len(labels) - shown} more)" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more
