"""The per-job work of `run_batch`: create (or find) each model once, watch it, record it.

Only proof closes a job in the journal: a terminal model, or a POST refused
(400/404/422) when no earlier attempt of that job was left ambiguous. Anything
else (401, 403, 3xx, a failed lookup, an unsettled create) ends the job for
this run as an error and leaves it open, to be reconciled or re-watched by the
next. Transient failures (connection, 5xx, 429, an unsettled create, the retry
budget) put the job back in the queue with a backoff until the deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._journal_state import JobState
from ._logging import log
from ._outcomes import BatchProgress, BatchResult, JobProgress, JobStage, durations
from ._serde import converter
from .errors import (
    AmbiguousCreateError,
    APIConnectionError,
    BadRequestError,
    HappyRobotError,
    JournalError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from .journal import Journal
from .types import Model, StatusChange, TrainingJob

if TYPE_CHECKING:
    from .client import HappyRobotClient
    from .watcher import TrainingWatcher

__all__: list[str] = []

OnChange = Callable[[StatusChange], Any]
OnResult = Callable[[BatchResult], object]

#: Failures that may pass: the job goes back in the queue (until the deadline).
TRANSIENT = (APIConnectionError, AmbiguousCreateError, ServerError, RateLimitError)
#: Refusals of a POST that prove no model was stored by it.
PROOF = (BadRequestError, NotFoundError)
MAX_BACKOFF = 60.0


class Runner:
    """The state of one `run_batch` call, shared by its per-job tasks."""

    def __init__(
        self,
        client: HappyRobotClient,
        jobs: Sequence[TrainingJob],
        journal: Journal,
        progress: BatchProgress,
        *,
        concurrency: int,
        deadline: float | None,
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.journal = journal
        self.progress = progress
        self.slots = asyncio.Semaphore(concurrency)
        # Jobs between their intent and their POST's end: the POSTs out, and as many
        # with their intent on its way to the disk, so a free slot rarely waits for an
        # fsync (see `_create_once`).
        self.ahead = asyncio.Semaphore(2 * concurrency)
        self.deadline = None if deadline is None else time.monotonic() + deadline
        self.user_on_change: OnChange | None = None
        self.on_result: OnResult | None = None
        self.results: dict[int, BatchResult] = {}
        self.job_of_model: dict[str, int] = {}
        self.watcher: TrainingWatcher | None = None
        self.rng = random.Random()

    async def run(self, index: int, kind: str) -> None:
        """Take job `index` to its end in this run (`kind`: create, reconcile, watch, retry)."""
        job, row = self.jobs[index], self.progress.jobs[index]
        state = self.journal.state(job)
        row.started, started_at = time.monotonic(), _now()
        try:
            if kind == "watch" and state.model_id is not None:
                target: Model | str = state.model_id
                row.model_id, row.model_status = state.model_id, state.status
            else:
                target = await self._obtain(index, retry=kind == "retry")
            row.stage = JobStage.WATCHING
            row.model_id = target if isinstance(target, str) else target.id
            self.job_of_model[row.model_id] = index
            assert self.watcher is not None, "run_batch enters the watcher before any job runs"
            final = await self.watcher.track(target)
            await self.journal.wait(self.journal.done(job, converter.unstructure(final), None))
        except JournalError:
            raise  # the whole batch stops: see run_batch
        except HappyRobotError as exc:
            self._fail(index, exc, started_at)
            return
        row.stage, row.model_status = JobStage.FINISHED, final.raw_status
        row.finished, row.error = time.monotonic(), None
        _mirror(row, state)
        self._ended(index, final, None, started_at)

    async def _obtain(self, index: int, *, retry: bool) -> Model:
        """The job's model: found (an earlier POST stored it) or created; transient: again."""
        job, row = self.jobs[index], self.progress.jobs[index]
        state = self.journal.state(job)
        if retry:
            await self._retry_gap(state)
        failures = 0
        while True:
            row.stage = JobStage.QUEUED
            try:
                return await self._create_once(job, state, row)
            except TRANSIENT as exc:
                delay = min(MAX_BACKOFF, self._backoff_base() * 2**failures)
                delay *= self.rng.uniform(0.5, 1.0)
                failures += 1
                if self.deadline is not None and time.monotonic() + delay > self.deadline:
                    raise
                log.info("job %s: %s; again in %.2f s", job.label, exc, delay, extra=_fields(job))
                row.stage, row.error = JobStage.RETRYING, str(exc)
                await asyncio.sleep(delay)
                row.error = None

    async def _create_once(self, job: TrainingJob, state: JobState, row: JobProgress) -> Model:
        """Find or create the job's model, and record it in the journal."""
        if state.sent_at is not None:  # a POST of an earlier attempt was never confirmed
            async with self.ahead, self.slots:  # (ahead too: intents wait for lookups' slots)
                row.stage = JobStage.SUBMITTING
                found = await self.client.models._find_created(job, state.sent_at)
            row.stage = JobStage.QUEUED
            if found is not None:
                if found.id in state.history:
                    raise HappyRobotError(
                        f"job {job.label}: the lookup for its unconfirmed create finds only its "
                        f"earlier model {found.id}; cannot tell whether another was created"
                    )
                log.info("job %s: found model %s from an earlier attempt", job.label, found.id)
                self._created(job, state, row, found)
                return found
        ambiguous_before = state.sent_at is not None
        # The intent is on disk before the POST leaves, as ever; it is written while
        # earlier POSTs hold the slots, so the fsync's latency is off the critical path.
        async with self.ahead:
            intent = self.journal.intent(job)
            _mirror(row, state)
            try:
                async with self.slots:
                    row.stage = JobStage.SUBMITTING
                    await self.journal.wait(intent)
                    model = await self.client.models._create(job, earlier=state.history)
            except PROOF as exc:
                if not ambiguous_before:  # refused, and nothing earlier may exist: proof
                    await self.journal.wait(self.journal.done(job, None, str(exc)))
                raise
        self._created(job, state, row, model)
        return model

    def _created(self, job: TrainingJob, state: JobState, row: JobProgress, model: Model) -> None:
        self.journal.created(job, model.id)
        row.model_status = model.raw_status
        _mirror(row, state)

    async def _retry_gap(self, state: JobState) -> None:
        """A retry's POST waits until a lookup can tell its model from the previous one."""
        if state.created_at is None:
            return
        policy = self.client.retry_policy
        gap = timedelta(seconds=policy.clock_skew + policy.reconcile_tolerance)
        wait = (state.created_at + gap - _now()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)

    def _backoff_base(self) -> float:
        return max(0.001, self.client.retry_policy.initial_delay * 4)

    def on_change(self, change: StatusChange) -> Any:
        """The watcher's `on_change`: record the change, then call the caller's."""
        index = self.job_of_model.get(change.model.id)
        if index is not None:
            job, row = self.jobs[index], self.progress.jobs[index]
            row.model_status = change.model.raw_status
            self.journal.status(job, change.model.id, change.model.raw_status, change.at)
            _mirror(row, self.journal.state(job))
        if self.user_on_change is None:
            return None
        outcome = self.user_on_change(change)
        return outcome if inspect.isawaitable(outcome) else None

    def _fail(self, index: int, exc: HappyRobotError, started_at: datetime) -> None:
        job, row = self.jobs[index], self.progress.jobs[index]
        state = self.journal.state(job)
        row.stage, row.error, row.finished = JobStage.ERROR, str(exc), time.monotonic()
        _mirror(row, state)
        row.finished_at = row.finished_at or _now()  # ended in this run, if not for good
        extra = {**_fields(job), "model_id": row.model_id}
        log.info("job %s failed: %s", job.label, exc, extra=extra)  # reported: INFO
        self._ended(index, None, exc, started_at)

    def _ended(
        self, index: int, model: Model | None, error: HappyRobotError | None, started: datetime
    ) -> None:
        job = self.jobs[index]
        result = make_result(index, job, self.journal.state(job), model, error, started)
        self.results[index] = result
        if self.on_result is not None:
            self.on_result(result)

    def finish_from_journal(self, index: int) -> None:
        """A job the journal had finished: its result, without a request."""
        job, row = self.jobs[index], self.progress.jobs[index]
        state = self.journal.state(job)
        model = converter.structure(state.final_model, Model) if state.final_model else None
        row.model_id = model.id if model is not None else state.model_id
        if model is None:
            row.stage = JobStage.ERROR
        else:
            row.stage, row.model_status = JobStage.FINISHED, model.raw_status
        row.error = state.error
        row.started = row.finished = time.monotonic()
        _mirror(row, state)
        error = HappyRobotError(state.error) if state.error else None
        self.results[index] = make_result(index, job, state, model, error)


def make_result(
    index: int,
    job: TrainingJob,
    state: JobState,
    model: Model | None,
    error: HappyRobotError | None,
    started_at: datetime | None = None,
) -> BatchResult:
    """A job's result: its model or error, and what the journal knows of it."""
    pending, training = durations(state.created_at, state.training_at, state.finished_at)
    return BatchResult(
        index,
        job,
        model,
        model.status if model is not None else None,
        error,
        started_at,
        state.finished_at or _now(),
        attempts=state.attempts,
        history=tuple(state.history),
        created_at=state.created_at,
        pending_seconds=pending,
        training_seconds=training,
        open=not state.done,
    )


def _mirror(row: JobProgress, state: JobState) -> None:
    """Copy the journal's view of a job (attempts, history, times) onto its progress row."""
    row.attempts, row.history = state.attempts, list(state.history)
    row.created_at, row.training_at, row.finished_at = (
        state.created_at,
        state.training_at,
        state.finished_at,
    )
    row.open = not state.done


def _fields(job: TrainingJob) -> dict[str, object]:
    return {"job_key": job.key, "use_case_id": job.use_case_id}


def _now() -> datetime:
    return datetime.now(UTC)
