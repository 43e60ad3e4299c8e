"""A durable, append-only JSONL journal of a batch, so a rerun after a crash loses nothing.

One record per line, each with a version `v` and a `type`:

- `header`: the fingerprint of the job list, so a journal is never replayed
  against other jobs;
- `intent`: about to POST job N (written and fsynced *before* the request);
- `created`: job N is model M (fsynced as soon as the POST returns);
- `status`: model M of job N changed status;
- `done`: job N is finished: its final model, or the error that ended it.

Records are strict (unknown keys refused). A torn last line, left by a crash
mid-write, is dropped; any other bad line is an error naming its number.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import cattrs

from ._serde import converter
from .errors import JournalError
from .types import TrainingJob

__all__: list[str] = []

VERSION: Final = 1


@attrs.frozen(kw_only=True)
class _Header:
    v: int
    type: Literal["header"]
    fingerprint: str
    jobs: int


@attrs.frozen(kw_only=True)
class _Intent:
    v: int
    type: Literal["intent"]
    job: int
    at: datetime


@attrs.frozen(kw_only=True)
class _Created:
    v: int
    type: Literal["created"]
    job: int
    model_id: str


@attrs.frozen(kw_only=True)
class _Status:
    v: int
    type: Literal["status"]
    job: int
    model_id: str
    status: str


@attrs.frozen(kw_only=True)
class _Done:
    v: int
    type: Literal["done"]
    job: int
    model: dict[str, Any] | None
    error: str | None


_Record = _Header | _Intent | _Created | _Status | _Done
_RECORD_TYPES: Final[dict[str, type[_Record]]] = {
    "header": _Header,
    "intent": _Intent,
    "created": _Created,
    "status": _Status,
    "done": _Done,
}


@attrs.define
class JobState:
    """What the journal says about one job."""

    intent_at: datetime | None = None
    """When the first unconfirmed POST for this job started (None: never sent)."""
    model_id: str | None = None
    status: str | None = None
    done: bool = False
    final_model: dict[str, Any] | None = None
    error: str | None = None


def jobs_fingerprint(jobs: Sequence[TrainingJob]) -> str:
    """A digest of the job list, stable across runs and machines."""
    canonical = json.dumps(
        [converter.unstructure(job) for job in jobs], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Journal:
    """The journal file of one batch: replay it with `open`, then append as the batch runs."""

    def __init__(self, path: Path, states: list[JobState], fingerprint: str) -> None:
        self.path = path
        self.states = states
        self.fingerprint = fingerprint
        self._file = path.open("a", encoding="utf-8")

    @classmethod
    def open(cls, path: str | os.PathLike[str], jobs: Sequence[TrainingJob]) -> Journal:
        """Replay `path` (if it exists) for `jobs`; refuse a journal of another job list."""
        path = Path(path)
        fingerprint = jobs_fingerprint(jobs)
        states = [JobState() for _ in jobs]
        records = _read(path) if path.exists() else []
        if records:
            header = records[0]
            if not isinstance(header, _Header):
                raise JournalError(f"{path}: line 1 is not a journal header")
            if header.fingerprint != fingerprint or header.jobs != len(jobs):
                raise JournalError(
                    f"{path} belongs to a different job list ({header.jobs} jobs); "
                    "use the jobs it was written for, or another journal path"
                )
            for number, record in enumerate(records[1:], start=2):
                if not _apply(record, states):
                    raise JournalError(f"{path}: line {number} does not fit this job list")
        journal = cls(path, states, fingerprint)
        if not records:
            journal._write(
                _Header(v=VERSION, type="header", fingerprint=fingerprint, jobs=len(jobs)),
                sync=True,
            )
        return journal

    def intent(self, job: int) -> datetime:
        """Record, durably, that job `job` is about to be POSTed; return the time noted."""
        at = datetime.now(UTC)
        self._write(_Intent(v=VERSION, type="intent", job=job, at=at), sync=True)
        state = self.states[job]
        if state.intent_at is None:
            state.intent_at = at
        return at

    def created(self, job: int, model_id: str) -> None:
        """Record, durably, that job `job` created model `model_id`."""
        self._write(_Created(v=VERSION, type="created", job=job, model_id=model_id), sync=True)
        self.states[job].model_id = model_id

    def status(self, job: int, model_id: str, status: str) -> None:
        """Record a status change (flushed, not fsynced: the watcher can see it again)."""
        self._write(_Status(v=VERSION, type="status", job=job, model_id=model_id, status=status))
        self.states[job].status = status

    def done(self, job: int, model: dict[str, Any] | None, error: str | None) -> None:
        """Record, durably, that job `job` is finished."""
        self._write(_Done(v=VERSION, type="done", job=job, model=model, error=error), sync=True)
        state = self.states[job]
        state.done, state.final_model, state.error = True, model, error

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the file."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def _write(self, record: _Record, *, sync: bool = False) -> None:
        line = json.dumps(converter.unstructure(record), separators=(",", ":"))
        self._file.write(line + "\n")
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())


def _read(path: Path) -> list[_Record]:
    """Parse every line; drop a torn last line (and cut it from the file)."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines.pop()  # after the last newline: "" unless the last write was torn
    records: list[_Record] = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(_parse(line))
        except (ValueError, cattrs.BaseValidationError) as exc:
            raise JournalError(f"{path}: line {number} is corrupt ({_why(exc)})") from exc
    if torn:
        with path.open("r+b") as file:
            file.truncate(len(raw) - len(torn))
    return records


def _parse(line: bytes) -> _Record:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("v") != VERSION:
        raise ValueError(f"unsupported journal version {data.get('v')!r}")
    cls = _RECORD_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown record type {data.get('type')!r}")
    record: _Record = converter.structure(data, cls)
    return record


def _apply(record: _Record, states: list[JobState]) -> bool:
    """Fold one record into the job states; False if it cannot belong to them."""
    if isinstance(record, _Header) or not 0 <= record.job < len(states):
        return False
    state = states[record.job]
    if isinstance(record, _Intent):
        if state.intent_at is None and state.model_id is None:
            state.intent_at = record.at
    elif isinstance(record, _Created):
        state.model_id = record.model_id
    elif isinstance(record, _Status):
        state.model_id, state.status = record.model_id, record.status
    else:
        state.done, state.final_model, state.error = True, record.model, record.error
    return True


def _why(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return str(exc)


def states_summary(states: Iterable[JobState]) -> dict[str, int]:
    """Counts of jobs by journal state: done, created (watching), sent (unconfirmed), new."""
    summary = {"done": 0, "created": 0, "sent": 0, "new": 0}
    for state in states:
        if state.done:
            summary["done"] += 1
        elif state.model_id:
            summary["created"] += 1
        elif state.intent_at:
            summary["sent"] += 1
        else:
            summary["new"] += 1
    return summary
