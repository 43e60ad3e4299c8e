"""A read-only look at a batch journal: each job's timeline, counts, running jobs, durations.

For `status` and `report`, while a batch may be appending to the journal: the
file is read without its lock and never repaired or rewritten, and a torn last
line (a write in progress) is skipped. Times are the journal's own (`at`: the
runner's clock, UTC). A retried job is shown by its current attempt.

A job's phases: *waiting* (from the journal's header, when the batch began, to
its first POST), *sending* (POST to model id), *pending* and *training* (from
the model's status changes), ended by its outcome (active, failed, refused).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs

from ._jobs import JobId, id_label
from ._journal_io import check_versions, read_records
from ._journal_records import Record
from ._journal_state import JobState
from .errors import JournalError

__all__: list[str] = []

DONE: Final = ("active", "failed", "refused")
OPEN: Final = ("watching", "sent", "never sent")
#: Where a job is: done, or open (its model watched, its POST unconfirmed, or never sent).
STATES: Final = DONE + OPEN
PHASES: Final = ("waiting", "sending", "pending", "training")


@attrs.frozen
class Phase:
    """One stretch of a job's timeline; `open` if it had not ended as of the summary."""

    name: str
    start: datetime
    end: datetime
    open: bool

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())


@attrs.frozen
class JobRow:
    """One job as the journal tells it (its current attempt)."""

    label: str
    name: str | None
    model_id: str | None
    state: str
    status: str | None
    """The model's last status (None before the first one is seen)."""
    attempts: int
    sent_at: datetime | None
    created_at: datetime | None
    training_at: datetime | None
    finished_at: datetime | None
    since: datetime | None
    """When it entered its current status (or was sent, if unconfirmed)."""
    error: str | None

    def phases(self, started_at: datetime | None, as_of: datetime) -> list[Phase]:
        """The job's timeline; phases still running end at `as_of`."""
        marks: list[tuple[str, datetime | None]] = [
            ("waiting", started_at),
            ("sending", self.sent_at),
            ("pending", self.created_at),
            ("training", self.training_at),
        ]
        known = [(name, at) for name, at in marks if at is not None]
        if self.sent_at is None:  # never sent, or from a v0.1 journal: no wait to show
            known = [mark for mark in known if mark[0] != "waiting"]
        closed = self.state in DONE
        phases = []
        for index, (name, start) in enumerate(known):
            end = known[index + 1][1] if index + 1 < len(known) else self.finished_at
            if end is None and closed:
                end = start  # finished at a time the journal did not keep (a v0.1 upgrade)
            phases.append(Phase(name, start, max(start, end or as_of), end is None))
        return phases


@attrs.frozen
class Stats:
    """Durations of one phase, in seconds: how many ended, their median and maximum."""

    count: int
    median: float | None
    max: float | None


@attrs.frozen
class Summary:
    """What a journal says, as of `now`."""

    path: str
    started_at: datetime | None
    """The header's time: when the batch began (None: an empty journal)."""
    last_at: datetime | None
    """The latest time recorded: the journal's last sign of life."""
    now: datetime
    jobs: tuple[JobRow, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Jobs per state, every state named (in `STATES` order)."""
        counts = dict.fromkeys(STATES, 0)
        for job in self.jobs:
            counts[job.state] += 1
        return counts

    @property
    def running(self) -> list[JobRow]:
        """Jobs being watched or sent unconfirmed, the longest in their status first."""
        rows = [job for job in self.jobs if job.state in ("watching", "sent")]
        return sorted(rows, key=lambda job: job.since or self.now)

    @property
    def failures(self) -> list[JobRow]:
        """Jobs that ended failed or refused."""
        return [job for job in self.jobs if job.state in ("failed", "refused")]

    def ended(self) -> dict[str, list[float]]:
        """The seconds each phase took, over the phases that have ended, by phase."""
        ended: dict[str, list[float]] = {name: [] for name in PHASES}
        for job in self.jobs:
            for phase in job.phases(self.started_at, self.now):
                if not phase.open:
                    ended[phase.name].append(phase.seconds)
        return ended

    def durations(self) -> dict[str, Stats]:
        """Each phase's count, median and maximum, over the phases that have ended."""
        return {
            name: Stats(
                len(values),
                statistics.median(values) if values else None,
                max(values, default=None),
            )
            for name, values in self.ended().items()
        }

    def for_seconds(self, job: JobRow) -> float | None:
        """How long `job` has been in its current status, as of `now`."""
        return None if job.since is None else max(0.0, (self.now - job.since).total_seconds())

    def to_json(self) -> dict[str, Any]:
        """Everything above as JSON-ready data (times as RFC 3339 strings)."""
        return {
            "journal": self.path,
            "started_at": _iso(self.started_at),
            "last_record_at": _iso(self.last_at),
            "as_of": _iso(self.now),
            "total": len(self.jobs),
            "counts": self.counts,
            "running": [
                {**_brief(job), "for_seconds": _round(self.for_seconds(job))}
                for job in self.running
            ],
            "durations": {
                name: {"count": s.count, "median": _round(s.median), "max": _round(s.max)}
                for name, s in self.durations().items()
            },
            "failures": [{**_brief(job), "error": job.error} for job in self.failures],
        }


def read_summary(
    path: str | Path, *, now: datetime | None = None, jobs: Mapping[JobId, str] | None = None
) -> Summary:
    """Summarize the journal at `path` without locking or changing it.

    `now` defaults to the journal's last recorded time. `jobs` (identity to name,
    from the jobs file) adds the jobs never sent and names keyed jobs.
    `JournalError` if the file is missing, unreadable, or not a version 2 journal.
    """
    path = Path(path)
    records, started_at = _records(path)
    states: dict[JobId, JobState] = {}
    first_sent: dict[JobId, datetime | None] = {}
    since: dict[JobId, datetime | None] = {}
    last_at = started_at
    for record in records:
        identity, at = record["job"], record.get("at")
        state = states.setdefault(identity, JobState(identity))
        if record["type"] == "intent" and (state.done or identity not in first_sent):
            first_sent[identity] = since[identity] = at
        before = state.status
        state.apply(record)
        if record["type"] == "created" or state.status != before:
            since[identity] = at
        if at is not None and (last_at is None or at > last_at):
            last_at = at
    names = dict(jobs or {})
    rows = [
        _row(state, first_sent.get(key), since.get(key), names) for key, state in states.items()
    ]
    rows += [_never_sent(key, name) for key, name in names.items() if key not in states]
    moment = now or last_at or datetime.now(UTC)
    return Summary(str(path), started_at, last_at, moment, tuple(rows))


def _records(path: Path) -> tuple[list[Record], datetime | None]:
    """The job records and the header's time; nothing on disk changes."""
    try:
        parsed = read_records(path, repair=False)
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror or exc}") from None
    if not parsed:
        return [], None
    header = parsed[0][1]
    if header["v"] == 1:
        raise JournalError(
            f"journal {path} was written by happyrobot-async 0.1, which kept no times and named "
            "jobs by position: run its batch once with this version (the same jobs file and "
            "--journal) to upgrade it, then look again"
        )
    check_versions(path, parsed)
    started: datetime = header["at"]
    return [record for _, record in parsed[1:]], started


def _row(
    state: JobState, sent: datetime | None, since: datetime | None, names: dict[JobId, str]
) -> JobRow:
    model = state.final_model or {}
    if state.done:
        outcome = "refused" if state.final_model is None else "failed"
        where = "active" if model.get("status") == "active" else outcome
    else:
        where = "watching" if state.model_id else "sent"
    name = model.get("name") or names.get(state.identity)
    if name is None and len(state.identity) == 2:
        name = state.identity[1]
    times = (sent, state.created_at, state.training_at, state.finished_at, since)
    name = name if isinstance(name, str) else None
    return JobRow(
        state.label, name, state.model_id, where, state.status, state.attempts, *times, state.error
    )


def _never_sent(identity: JobId, name: str) -> JobRow:
    return JobRow(id_label(identity), name, None, "never sent", None, 0, *[None] * 6)


def _brief(job: JobRow) -> dict[str, Any]:
    return {"job": job.label, "name": job.name, "model_id": job.model_id, "status": shown(job)}


def shown(job: JobRow) -> str:
    """The status a person is shown: the model's, or what stands for it without a model."""
    if job.state in ("sent", "refused", "never sent"):
        return job.state
    return job.status or "created"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
