"""`run_batch`: validate every job, preflight, create each once, watch all, report in order.

With a journal, a batch survives being killed at any moment: rerun it with the
same journal and it skips finished jobs, re-watches created models, and
reconciles jobs whose POST was sent but never confirmed before creating
anything, so every job ends with exactly one model (plus one per retry asked
for). Jobs are matched to the journal by identity (`key`, else use case and
name), so the job list may change between runs. The per-job rules (what closes
a job, what is retried) are `_batch_runner`'s.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack, overload

from ._batch_runner import OnChange, OnResult, Runner
from ._jobs import job_id, validate_jobs
from ._journal_state import JobState
from ._outcomes import BatchPlan, BatchProgress, BatchReport, JobProgress
from ._preflight import preflight
from .errors import BatchFailedError, InvalidRequestError, JournalError
from .journal import Journal
from .types import TrainingJob
from .watcher import check_poll_intervals

if TYPE_CHECKING:
    from .client import HappyRobotClient

__all__ = ["run_batch"]


class BatchOptions(TypedDict, total=False):
    """The keywords of `run_batch` besides `dry_run`: written once for both overloads.

    The CLI passes them through with `Unpack` too, so a new keyword is typed end to end.
    """

    concurrency: int
    journal: str | os.PathLike[str] | Journal | None
    raise_on_failure: bool
    on_change: OnChange | None
    on_result: OnResult | None
    progress: BatchProgress | None
    poll_interval: float
    max_poll_interval: float
    retry_failed: bool
    retry_errors: bool
    deadline: float | None


@overload
async def run_batch(
    client: HappyRobotClient,
    jobs: Sequence[TrainingJob | Mapping[str, Any]],
    *,
    dry_run: Literal[False] = ...,
    **options: Unpack[BatchOptions],
) -> BatchReport: ...


@overload
async def run_batch(
    client: HappyRobotClient,
    jobs: Sequence[TrainingJob | Mapping[str, Any]],
    *,
    dry_run: Literal[True],
    **options: Unpack[BatchOptions],
) -> BatchPlan: ...


async def run_batch(
    client: HappyRobotClient,
    jobs: Sequence[TrainingJob | Mapping[str, Any]],
    *,
    concurrency: int = 16,
    journal: str | os.PathLike[str] | Journal | None = None,
    raise_on_failure: bool = False,
    on_change: OnChange | None = None,
    on_result: OnResult | None = None,
    progress: BatchProgress | None = None,
    poll_interval: float = 2.0,
    max_poll_interval: float = 30.0,
    retry_failed: bool = False,
    retry_errors: bool = False,
    deadline: float | None = None,
    dry_run: bool = False,
) -> BatchReport | BatchPlan:
    """Create and train every job (at most `concurrency` creates at once); report each.

    Before any create, a preflight checks the key, the base URL, each use case
    and each `from_model_id` (`PreflightError` lists every problem). `journal`
    is a path (locked for this run; `JournalError` if another runner holds it)
    or a `Journal` already open (then the caller closes it). `retry_failed`
    creates a new model for jobs the journal had finished `failed`;
    `retry_errors` retries jobs whose create was refused. Transient failures
    are retried with a backoff until `deadline` (seconds from now; None: while
    the run lasts). `dry_run=True` sends no POST: it returns the `BatchPlan`.

    `on_change` gets every status change; `on_result` gets each job's `BatchResult`
    as soon as that job ends in this run (jobs the journal already had finished are
    not reported again). Both are called on the event loop and must not block.
    """
    checked = validate_jobs(jobs)
    if concurrency < 1:
        raise InvalidRequestError("concurrency", "must be at least 1")
    if deadline is not None and not deadline > 0:
        raise InvalidRequestError("deadline", "must be > 0 seconds")
    check_poll_intervals(poll_interval, max_poll_interval)
    book, owned = await _open(journal, checked, readonly=dry_run)
    try:
        plan, kinds = _plan(book, checked, retry_failed=retry_failed, retry_errors=retry_errors)
        await _preflight(client, checked, kinds, concurrency)
        if dry_run:
            return plan
        progress = progress if progress is not None else BatchProgress()
        progress.jobs[:] = [JobProgress(job) for job in checked]
        runner = Runner(client, checked, book, progress, concurrency=concurrency, deadline=deadline)
        runner.user_on_change, runner.on_result = on_change, on_result
        await _run(runner, kinds, poll_interval, max_poll_interval)
    finally:
        if owned:
            book.close()
    report = BatchReport(tuple(runner.results[i] for i in range(len(checked))), plan.removed)
    if raise_on_failure and not report.ok:
        raise BatchFailedError(report)
    return report


async def _open(
    journal: str | os.PathLike[str] | Journal | None,
    jobs: list[TrainingJob],
    *,
    readonly: bool,
) -> tuple[Journal, bool]:
    """The journal to run with, and whether this run owns (closes) it.

    Replaying a large journal is file work: it runs on a thread, off the event loop.
    """
    if journal is None:
        return Journal.memory(), True
    if isinstance(journal, Journal):
        if journal.closed:
            raise JournalError(f"journal {journal.path} is closed: pass its path, or an open one")
        return journal, False
    opening = asyncio.get_running_loop().run_in_executor(
        None, lambda: Journal.open(journal, jobs, readonly=readonly)
    )
    try:
        return await asyncio.shield(opening), True
    except asyncio.CancelledError:
        opening.add_done_callback(_close_unwanted)
        raise


def _close_unwanted(opening: asyncio.Future[Journal]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _plan(
    journal: Journal, jobs: list[TrainingJob], *, retry_failed: bool, retry_errors: bool
) -> tuple[BatchPlan, list[str]]:
    """What each job needs (create, reconcile, watch, retry or done), and the plan of it all."""
    kinds = [_kind(journal.states.get(job_id(job)), retry_failed, retry_errors) for job in jobs]
    lists: dict[str, list[str]] = {k: [] for k in ("create", "reconcile", "watch", "retry", "done")}
    for job, kind in zip(jobs, kinds, strict=True):
        lists[kind].append(job.label)
    plan = BatchPlan(
        **{name: tuple(labels) for name, labels in lists.items()},
        removed=tuple(journal.removed(jobs)),
    )
    return plan, kinds


def _kind(state: JobState | None, retry_failed: bool, retry_errors: bool) -> str:
    if state is None:
        return "create"
    if state.done:
        if (retry_failed and state.failed) or (retry_errors and state.refused):
            return "retry"
        return "done"
    if state.model_id is not None:
        return "watch"
    return "reconcile" if state.sent_at is not None else "create"


async def _preflight(
    client: HappyRobotClient, jobs: list[TrainingJob], kinds: list[str], concurrency: int
) -> None:
    """Preflight the use cases of every job with work to do, and the models to clone."""
    use_cases: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}
    for job, kind in zip(jobs, kinds, strict=True):
        if kind == "done":
            continue
        use_cases.setdefault(job.use_case_id, []).append(job.label)
        if kind != "watch":
            sources.setdefault(job.from_model_id, []).append(job.label)
    if use_cases:
        await preflight(client, use_cases, sources, concurrency=concurrency)


async def _run(
    runner: Runner, kinds: list[str], poll_interval: float, max_poll_interval: float
) -> None:
    """Finish the journal's done jobs at once; run the others under one watcher."""
    todo = []
    for index, kind in enumerate(kinds):
        if kind == "done":
            runner.finish_from_journal(index)
        else:
            todo.append(index)
    if not todo:
        return
    async with runner.client.watcher(
        poll_interval=poll_interval,
        max_poll_interval=max_poll_interval,
        on_change=runner.on_change,
    ) as watcher:
        runner.watcher = watcher
        try:
            async with asyncio.TaskGroup() as group:
                for index in todo:
                    group.create_task(runner.run(index, kinds[index]))
        except BaseExceptionGroup as group:
            broken = group.subgroup(JournalError)
            if broken is None:
                raise
            raise _first(broken) from None


def _first(group: BaseExceptionGroup[JournalError]) -> JournalError:
    """The first error of a (nested) group: a broken journal is reported once."""
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error
