"""`run_batch`: validate every job, create each once, watch all to the end, report in order.

With a journal, a batch survives being killed at any moment: rerun it with the
same jobs and journal and it skips finished jobs, re-watches created models,
and reconciles jobs whose POST was sent but never confirmed before creating
anything, so every job ends with exactly one model.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from ._create import create_safely, reconcile
from ._retry import CreateFailure, classify_create_failure
from ._serde import converter
from .errors import APIStatusError, HappyRobotError, InvalidRequestError
from .journal import Journal
from .types import Model, ModelStatus, StatusChange, TrainingJob
from .watcher import TrainingWatcher

if TYPE_CHECKING:
    from .client import HappyRobotClient

__all__ = [
    "BatchFailedError",
    "BatchProgress",
    "BatchReport",
    "BatchResult",
    "InvalidJobsError",
    "run_batch",
    "validate_jobs",
]

log = logging.getLogger("happyrobot_async")
OnChange = Callable[[StatusChange], Any]


class InvalidJobsError(InvalidRequestError):
    """Some jobs of a batch are invalid; `problems` lists each as (index, message)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        listed = "; ".join(f"job {index}: {message}" for index, message in problems)
        super().__init__("jobs", f"{len(problems)} invalid job(s): {listed}")
        self.problems = problems


@attrs.frozen
class BatchResult:
    """How one job ended: its model (if one was created), final status, and error (if any)."""

    index: int
    job: TrainingJob
    model: Model | None
    status: ModelStatus | None
    error: HappyRobotError | None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when the model finished training and is usable."""
        return self.status is ModelStatus.ACTIVE


@attrs.frozen
class BatchReport:
    """One result per job, in input order."""

    results: tuple[BatchResult, ...]

    @property
    def ok(self) -> bool:
        """True when every job ended `active`."""
        return all(result.ok for result in self.results)

    def counts(self) -> dict[str, int]:
        """How many jobs ended in each status ("error" for those with no model)."""
        return dict(Counter(_outcome(result) for result in self.results))


class BatchFailedError(HappyRobotError):
    """`raise_on_failure=True` and some jobs did not end `active`; `report` has them all."""

    def __init__(self, report: BatchReport) -> None:
        failed = sum(not result.ok for result in report.results)
        super().__init__(f"{failed} of {len(report.results)} job(s) did not end active")
        self.report = report


@attrs.define
class JobProgress:
    """What is known of one job right now (for live views)."""

    job: TrainingJob
    state: str = "queued"
    model_id: str | None = None
    error: str | None = None
    started: float | None = None
    finished: float | None = None

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the job started (until it finished)."""
        if self.started is None:
            return 0.0
        return (self.finished or now or time.monotonic()) - self.started


@attrs.define
class BatchProgress:
    """A live picture of a running batch, for progress displays; read it, don't write it."""

    jobs: list[JobProgress] = attrs.field(factory=list)

    def counts(self) -> dict[str, int]:
        """Jobs per state: queued, submitting, pending, training, active, failed, error..."""
        return dict(Counter(job.state for job in self.jobs))

    @property
    def finished(self) -> int:
        """Jobs that will change no more."""
        return sum(job.finished is not None for job in self.jobs)


def validate_jobs(jobs: Sequence[TrainingJob | Mapping[str, Any]]) -> list[TrainingJob]:
    """Every job checked as `create` checks it, and `(use_case_id, name)` unique; all at once."""
    problems: list[tuple[int, str]] = []
    valid: list[TrainingJob] = []
    seen: dict[tuple[str, str], int] = {}
    for index, job in enumerate(jobs):
        try:
            checked = job if isinstance(job, TrainingJob) else _job_from_mapping(job)
        except (InvalidRequestError, TypeError) as exc:
            problems.append((index, str(exc)))
            continue
        key = (checked.use_case_id, checked.name)
        if key in seen:
            problems.append((index, f"same use case and name as job {seen[key]}: {key[1]!r}"))
        seen.setdefault(key, index)
        valid.append(checked)
    if problems:
        raise InvalidJobsError(problems)
    return valid


async def run_batch(
    client: HappyRobotClient,
    jobs: Sequence[TrainingJob | Mapping[str, Any]],
    *,
    concurrency: int = 16,
    journal: str | os.PathLike[str] | None = None,
    raise_on_failure: bool = False,
    on_change: OnChange | None = None,
    progress: BatchProgress | None = None,
    poll_interval: float = 2.0,
    max_poll_interval: float = 30.0,
) -> BatchReport:
    """Create and train every job (at most `concurrency` creates at once); report each."""
    checked = validate_jobs(jobs)
    if concurrency < 1:
        raise InvalidRequestError("concurrency", "must be at least 1")
    book = Journal.open(journal, checked) if journal is not None else None
    progress = progress if progress is not None else BatchProgress()
    progress.jobs[:] = [JobProgress(job) for job in checked]
    runner = _Runner(client, checked, book, progress, on_change, asyncio.Semaphore(concurrency))
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
        on_change: OnChange | None,
        slots: asyncio.Semaphore,
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.journal = journal
        self.progress = progress
        self.user_on_change = on_change
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
                row.state = state.status or "created"
            else:
                row.state = "submitting"
                async with self.slots:
                    target = await self._create(index)
                row.state = target.raw_status
            row.model_id = target if isinstance(target, str) else target.id
            self.job_of_model[row.model_id] = index
            assert self.watcher is not None, "run_batch enters the watcher before any job runs"
            final = await self.watcher.track(target)
        except HappyRobotError as exc:
            self._fail(index, exc, started_at)
            return
        row.state, row.finished = final.raw_status, time.monotonic()
        if self.journal is not None:
            self.journal.done(index, converter.unstructure(final), None)
        self.results[index] = BatchResult(
            index, job, final, final.status, None, started_at, datetime.now(UTC)
        )

    async def _create(self, index: int) -> Model:
        job = self.jobs[index]
        state = self.journal.states[index] if self.journal is not None else None
        if state is not None and state.intent_at is not None:
            found = await reconcile(self.client, job, state.intent_at)
            if found is not None:
                log.info("job %s: found model %s from an earlier run", job.label, found.id)
                self._created(index, found)
                return found
        if self.journal is not None:
            self.journal.intent(index)
        model = await create_safely(self.client, job)
        self._created(index, model)
        return model

    def _created(self, index: int, model: Model) -> None:
        if self.journal is not None:
            self.journal.created(index, model.id)

    def on_change(self, change: StatusChange) -> Any:
        index = self.job_of_model.get(change.model.id)
        if index is not None:
            self.progress.jobs[index].state = change.model.raw_status
            if self.journal is not None:
                self.journal.status(index, change.model.id, change.model.raw_status)
        if self.user_on_change is None:
            return None
        outcome = self.user_on_change(change)
        return outcome if inspect.isawaitable(outcome) else None

    def _fail(self, index: int, exc: HappyRobotError, started_at: datetime) -> None:
        row = self.progress.jobs[index]
        row.state, row.error, row.finished = "error", str(exc), time.monotonic()
        log.warning("job %s failed: %s", self.jobs[index].label, exc)
        # Only a refusal of the create proves no model exists; anything else stays
        # open in the journal, so a rerun reconciles or re-watches, never re-creates.
        refused = (
            isinstance(exc, APIStatusError)
            and classify_create_failure(exc) is CreateFailure.FATAL
            and row.model_id is None
        )
        if self.journal is not None and refused:
            self.journal.done(index, None, str(exc))
        self.results[index] = BatchResult(
            index, self.jobs[index], None, None, exc, started_at, datetime.now(UTC)
        )

    def _finish_from_journal(self, index: int) -> None:
        assert self.journal is not None
        state, row = self.journal.states[index], self.progress.jobs[index]
        model = converter.structure(state.final_model, Model) if state.final_model else None
        row.model_id = model.id if model is not None else state.model_id
        row.state = model.raw_status if model is not None else "error"
        row.error = state.error
        row.started = row.finished = time.monotonic()
        error = HappyRobotError(state.error) if state.error else None
        status = model.status if model is not None else None
        self.results[index] = BatchResult(index, self.jobs[index], model, status, error)


def _job_from_mapping(data: Mapping[str, Any]) -> TrainingJob:
    if not isinstance(data, Mapping):
        raise TypeError(f"a job must be an object, not {type(data).__name__}")
    fields = {field.name for field in attrs.fields(TrainingJob)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise InvalidRequestError(unknown[0], "is not a job field")
    missing = sorted(
        f.name
        for f in attrs.fields(TrainingJob)
        if f.default is attrs.NOTHING and f.name not in data
    )
    if missing:
        raise InvalidRequestError(", ".join(missing), "required, missing")
    return TrainingJob(**data)


def _outcome(result: BatchResult) -> str:
    if result.model is not None:
        return result.model.raw_status
    return "error"
