"""What the journal says about each job: `JobState`, rebuilt by replaying its records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from ._jobs import JobId, changed_fields, id_label, job_id
from ._journal_records import Record
from .errors import JournalError
from .types import TrainingJob

__all__: list[str] = []


@attrs.define(slots=True)
class JobState:
    """What the journal says about one job."""

    identity: JobId
    content: dict[str, str] | None = None
    """The field hashes of the job as last sent (None: never sent)."""
    attempts: int = 0
    """POSTs ever sent for this job (resends and retries included)."""
    sent_at: datetime | None = None
    """When the current attempt's first unconfirmed POST started (None: none unconfirmed)."""
    model_id: str | None = None
    status: str | None = None
    done: bool = False
    final_model: dict[str, Any] | None = None
    error: str | None = None
    history: list[str] = attrs.Factory(list)
    """Every model id this job ever had, oldest first."""
    created_at: datetime | None = None
    training_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def label(self) -> str:
        """The job's key, or its use case and name."""
        return id_label(self.identity)

    @property
    def failed(self) -> bool:
        """Finished with a model whose training failed."""
        return self.done and (self.final_model or {}).get("status") == "failed"

    @property
    def refused(self) -> bool:
        """Finished without a model: its create was refused."""
        return self.done and self.final_model is None

    def apply(self, record: Record) -> None:
        """Fold one record (of this job) into the state."""
        kind, at = record["type"], record.get("at")
        if kind == "intent":
            if self.done:  # a retry: a new attempt, the history stays
                self.done, self.final_model, self.error = False, None, None
                self.model_id = self.status = self.sent_at = None
                self.created_at = self.training_at = self.finished_at = None
            self.attempts += 1
            self.content = record["content"]
            if self.sent_at is None and self.model_id is None:
                self.sent_at = at
        elif kind == "created":
            self._model(record["model_id"])
            self.sent_at, self.status, self.created_at = None, None, at
        elif kind == "status":
            self._model(record["model_id"])
            self.status = record["status"]
            if self.status == "training" and self.training_at is None:
                self.training_at = at
        elif kind == "done":
            self.done, self.final_model, self.error = True, record["model"], record["error"]
            self.sent_at, self.finished_at = None, at
            if self.final_model is not None:
                self._model(self.final_model["id"])
                self.status = self.final_model.get("status")

    def _model(self, model_id: str) -> None:
        self.model_id = model_id
        if model_id not in self.history:
            self.history.append(model_id)


def replay(records: Iterable[Record]) -> dict[JobId, JobState]:
    """Every job's state after `records`, by identity, in order of first appearance."""
    states: dict[JobId, JobState] = {}
    for record in records:
        identity = record["job"]
        state = states.get(identity)
        if state is None:
            state = states[identity] = JobState(identity)
        state.apply(record)
    return states


def refuse_changed(path: Path, states: dict[JobId, JobState], jobs: Sequence[TrainingJob]) -> None:
    """`JournalError` naming every job changed since its create was sent (and the fields)."""
    changed = []
    for job in jobs:
        state = states.get(job_id(job))
        if state is not None and state.content is not None:
            fields = changed_fields(state.content, job)
            if fields:
                changed.append(f"{job.label} ({', '.join(fields)})")
    if changed:
        shown = "; ".join(changed[:10]) + (
            f"; and {len(changed) - 10} more" if changed[10:] else ""
        )
        raise JournalError(
            f"journal {path}: {len(changed)} job(s) changed after their create was sent: "
            f"{shown}. A sent job is never re-created silently: restore these jobs as they "
            "were, or give a changed job a new key (or name) to train it as a new job"
        )
