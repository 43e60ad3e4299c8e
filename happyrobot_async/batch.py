"""`run_batch`: validate every job, create each once, watch all to the end, report in order.

With a journal, a batch survives being killed at any moment: rerun it with the
same jobs and journal and it skips finished jobs, re-watches created models,
and reconciles jobs whose POST was sent but never confirmed before creating
anything, so every job ends with exactly one model.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._jobs import validate_jobs
from ._logging import log
from ._outcomes import BatchProgress, BatchReport, BatchResult, JobProgress, JobStage
from ._serde import converter
from .errors import (
    BadRequestError,
    BatchFailedError,
    HappyRobotError,
    InvalidRequestError,
    NotFoundError,
)
from .journal import Journal
from .types import Model, StatusChange, TrainingJob
from .watcher import TrainingWatcher

if TYPE_CHECKING:
    from .client import HappyRobotClient

__all__ = ["run_batch"]

OnChange = Callable[[StatusChange], Any]
OnResult = Callable[[BatchResult], object]


async def run_batch(
    client: HappyRobotClient,
    jobs: Sequence[TrainingJob | Mapping[str, Any]],
    *,
    concurrency: int = 16,
    journal: str | os.PathLike[str] | None = None,
    raise_on_failure: bool = False,
    on_change: OnChange | None = None,
    on_result: OnResult | None = None,
    progress: BatchProgress | None = None,
    poll_interval: float = 2.0,
    max_poll_interval: float = 30.0,
) -> BatchReport:
    """Create and train every job (at most `concurrency` creates at once); report each.

    `on_change` gets every status change; `on_result` gets each job's `BatchResult`
    as soon as that job ends in this run (jobs the journal already had finished are
    not reported again). Both are called on the event loop and must not block.
    """
    checked = validate_jobs(jobs)
    if concurrency < 1:
        raise InvalidRequestError("concurrency", "must be at least 1")
    book = Journal.open(journal, checked) if journal is not None else None
    progress = progress if progress is not None else BatchProgress()
    progress.jobs[:] = [JobProgress(job) for job in checked]
    runner = _Runner(client, checked, book, progress, asyncio.Semaphore(concurrency))
    runner.user_on_change, runner.on_result = on_change, on_result
    try:
        async with client.watcher(
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_change=runner.on_change,
        ) as watcher:
            runner.watcher = watcher
            async with asyncio.TaskGroup() as group:
                for index in range(len(checked)):
                    group.create_task(runner.run(index))
    finally:
        if book is not None:
            book.close()
    report = BatchReport(tuple(runner.results[i] for i in range(len(checked))))
    if raise_on_failure and not report.ok:
        raise BatchFailedError(report)
    return report


class _Runner:
    """The state of one `run_batch` call, shared by its per-job tasks."""

    def __init__(
        self,
        client: HappyRobotClient,
        jobs: list[TrainingJob],
        journal: Journal | None,
        progress: BatchProgress,
        slots: asyncio.Semaphore,
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.journal = journal
        self.progress = progress
        self.user_on_change: OnChange | None = None
        self.on_result: OnResult | None = None
        self.slots = slots
        self.results: dict[int, BatchResult] = {}
        self.job_of_model: dict[str, int] = {}
        self.watcher: TrainingWatcher | None = None

    async def run(self, index: int) -> None:
        job, row = self.jobs[index], self.progress.jobs[index]
        state = self.journal.states[index] if self.journal is not None else None
        if state is not None and state.done:
            self._finish_from_journal(index)
            return
        row.started = time.monotonic()
        started_at = datetime.now(UTC)
        try:
            if state is not None and state.model_id is not None:  # created by an earlier run
                target: Model | str = state.model_id
                row.model_status = state.status
            else:
                row.stage = JobStage.SUBMITTING
                async with self.slots:
                    target = await self._create(index)
                row.model_status = target.raw_status
            row.stage = JobStage.WATCHING
            row.model_id = target if isinstance(target, str) else target.id
            self.job_of_model[row.model_id] = index
            assert self.watcher is not None, "run_batch enters the watcher before any job runs"
            final = await self.watcher.track(target)
        except HappyRobotError as exc:
            self._fail(index, exc, started_at)
            return
        row.stage, row.model_status = JobStage.FINISHED, final.raw_status
        row.finished = time.monotonic()
        if self.journal is not None:
            self.journal.done(index, converter.unstructure(final), None)
        self._ended(BatchResult(index, job, final, final.status, None, started_at, _now()))

    async def _create(self, index: int) -> Model:
        job = self.jobs[index]
        state = self.journal.states[index] if self.journal is not None else None
        if state is not None and state.intent_at is not None:
            found = await self.client.models._find_created(job, state.intent_at)
            if found is not None:
                log.info(
                    "job %s: found model %s from an earlier run",
                    job.label,
                    found.id,
                    extra=_fields(job, found.id),
                )
                self._created(index, found)
                return found
        if self.journal is not None:
            self.journal.intent(index)
        model = await self.client.models._create(job)
        self._created(index, model)
        return model

    def _created(self, index: int, model: Model) -> None:
        if self.journal is not None:
            self.journal.created(index, model.id)

    def on_change(self, change: StatusChange) -> Any:
        index = self.job_of_model.get(change.model.id)
        if index is not None:
            self.progress.jobs[index].model_status = change.model.raw_status
            if self.journal is not None:
                self.journal.status(index, change.model.id, change.model.raw_status)
        if self.user_on_change is None:
            return None
        outcome = self.user_on_change(change)
        return outcome if inspect.isawaitable(outcome) else None

    def _fail(self, index: int, exc: HappyRobotError, started_at: datetime) -> None:
        row = self.progress.jobs[index]
        row.stage, row.error, row.finished = JobStage.ERROR, str(exc), time.monotonic()
        job = self.jobs[index]  # reported in the job's result: INFO, not WARNING
        log.info("job %s failed: %s", job.label, exc, extra=_fields(job, row.model_id))
        # Only a refusal of the create (400/404/422) proves no model exists; anything
        # else stays open in the journal, so a rerun reconciles or re-watches, never
        # re-creates, and a wrong key or URL on one run is not made permanent.
        refused = isinstance(exc, BadRequestError | NotFoundError) and row.model_id is None
        if self.journal is not None and refused:
            self.journal.done(index, None, str(exc))
        self._ended(BatchResult(index, self.jobs[index], None, None, exc, started_at, _now()))

    def _ended(self, result: BatchResult) -> None:
        self.results[result.index] = result
        if self.on_result is not None:
            self.on_result(result)

    def _finish_from_journal(self, index: int) -> None:
        assert self.journal is not None
        state, row = self.journal.states[index], self.progress.jobs[index]
        model = converter.structure(state.final_model, Model) if state.final_model else None
        row.model_id = model.id if model is not None else state.model_id
        if model is None:
            row.stage = JobStage.ERROR
        else:
            row.stage, row.model_status = JobStage.FINISHED, model.raw_status
        row.error = state.error
        row.started = row.finished = time.monotonic()
        error = HappyRobotError(state.error) if state.error else None
        status = model.status if model is not None else None
        self.results[index] = BatchResult(index, self.jobs[index], model, status, error)


def _fields(job: TrainingJob, model_id: str | None) -> dict[str, object]:
    return {"job_key": job.key, "use_case_id": job.use_case_id, "model_id": model_id}


def _now() -> datetime:
    return datetime.now(UTC)
