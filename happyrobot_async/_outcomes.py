"""What a batch reports: each job's result, the whole report, and live progress."""

from __future__ import annotations

import enum
import time
from collections import Counter
from datetime import datetime

import attrs

from .errors import HappyRobotError
from .types import Model, ModelStatus, TrainingJob

__all__ = ["BatchPlan", "BatchProgress", "BatchReport", "BatchResult", "JobProgress", "JobStage"]


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
    attempts: int = 0
    """POSTs ever sent for this job, over every run (resends and retries included)."""
    history: tuple[str, ...] = ()
    """Every model id the job ever had, oldest first (a retry adds one)."""
    created_at: datetime | None = None
    """When its model was created (confirmed, or found by a lookup), on our clock."""
    pending_seconds: float | None = None
    """From created to training (or to the end, if training was never seen)."""
    training_seconds: float | None = None
    """From training to the end."""
    open: bool = False
    """True when the job is not finished: a rerun with the journal takes it up again."""

    @property
    def ok(self) -> bool:
        """True when the model finished training and is usable."""
        return self.status is ModelStatus.ACTIVE


@attrs.frozen
class BatchReport:
    """One result per job, in input order."""

    results: tuple[BatchResult, ...]
    removed: tuple[str, ...] = ()
    """Jobs the journal knows that the job list no longer holds (labels): left alone."""

    @property
    def ok(self) -> bool:
        """True when every job ended `active`."""
        return all(result.ok for result in self.results)

    @property
    def failed(self) -> int:
        """How many jobs did not end `active`."""
        return sum(not result.ok for result in self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        counts = ", ".join(f"{status}={n}" for status, n in sorted(self.counts().items()))
        return f"BatchReport({len(self.results)} jobs: {counts or 'none'})"

    def counts(self) -> dict[str, int]:
        """How many jobs ended in each status ("error" for those with no model)."""
        return dict(Counter(_outcome(result) for result in self.results))


class JobStage(enum.StrEnum):
    """Where one job of a running batch is."""

    QUEUED = "queued"
    """Waiting for a create slot."""
    RETRYING = "retrying"
    """Backing off after a transient failure; it is sent again (until the deadline)."""
    SUBMITTING = "submitting"
    """Its create is being sent (and settled, if ambiguous)."""
    WATCHING = "watching"
    """Its model exists; the watcher follows it."""
    FINISHED = "finished"
    """Its model reached a terminal status."""
    ERROR = "error"
    """It ended without a terminal model; `JobProgress.error` says why."""


@attrs.define
class JobProgress:
    """What is known of one job right now (for live views)."""

    job: TrainingJob
    stage: JobStage = JobStage.QUEUED
    model_id: str | None = None
    model_status: str | None = None
    """The model's status as the server last spelled it (None before it has one)."""
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    """POSTs ever sent for this job (see `BatchResult.attempts`)."""
    history: list[str] = attrs.Factory(list)
    """Every model id the job ever had, oldest first."""
    created_at: datetime | None = None
    training_at: datetime | None = None
    finished_at: datetime | None = None
    open: bool = True
    """False once the job is finished for good (a terminal model, or a refused create)."""

    def durations(self) -> tuple[float | None, float | None]:
        """Seconds pending and training, as far as they were seen."""
        return durations(self.created_at, self.training_at, self.finished_at)

    @property
    def state(self) -> str:
        """One word to show: "error", else the model's status, else the stage."""
        if self.stage is JobStage.ERROR:
            return self.stage.value
        return self.model_status or self.stage.value

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


@attrs.frozen
class BatchPlan:
    """What a run would do (`run_batch(..., dry_run=True)`): each list holds job labels."""

    create: tuple[str, ...] = ()
    """Never sent: a model will be created."""
    reconcile: tuple[str, ...] = ()
    """Sent by an earlier run, never confirmed: looked up first, created only if not found."""
    watch: tuple[str, ...] = ()
    """Created by an earlier run: watched to the end, never created again."""
    retry: tuple[str, ...] = ()
    """Finished failed or refused, and asked to retry: a new model will be created."""
    done: tuple[str, ...] = ()
    """Finished: nothing is sent for them."""
    removed: tuple[str, ...] = ()
    """In the journal, not in the job list: left alone."""

    def counts(self) -> dict[str, int]:
        """How many jobs in each list."""
        names = ("create", "reconcile", "watch", "retry", "done", "removed")
        return {name: len(getattr(self, name)) for name in names}


def durations(
    created: datetime | None, training: datetime | None, finished: datetime | None
) -> tuple[float | None, float | None]:
    """Seconds pending (created to training, or to the end) and training (to the end)."""
    if created is None:
        return None, None
    pending_end = training or finished
    pending = _seconds(created, pending_end) if pending_end is not None else None
    if training is None or finished is None:
        return pending, None
    return pending, _seconds(training, finished)


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _outcome(result: BatchResult) -> str:
    if result.model is not None:
        return result.model.raw_status
    return "error"
