"""A durable, append-only JSONL journal of a batch, so a rerun after a crash loses nothing.

Jobs are named by identity (`key`, else use case and name), so the jobs file may
grow, shrink or be reordered between runs; a job changed after its create was
sent is refused by name. One runner at a time holds a journal (an OS lock);
lines are appended and fsynced on a thread of their own, in groups, and an
intent is on disk before its POST leaves. The line formats are in
`_journal_records`, the file handling in `_journal_io`, the writer thread in
`_journal_writer`.

Replay rebuilds each job's `JobState`: its attempts, its history (every model
id it ever had) and the times of its current attempt. A torn last line (a crash
mid-write) is dropped; any other bad line is a `JournalError` naming its number.
Journals written by v0.1 are upgraded in place, for the job list they were for.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._jobs import JobId, content_digest, job_id
from ._journal_io import JournalLock, check_versions, read_records, rewrite
from ._journal_records import Record, encode, jobs_fingerprint, migrate_v1
from ._journal_state import JobState, refuse_changed, replay
from ._journal_writer import Appender, JournalGoneError, Waiter
from .errors import JournalError
from .types import TrainingJob

__all__: list[str] = []


_RESOLVED: Waiter = Future()
_RESOLVED.set_result(None)


class Journal:
    """The journal of one batch: replay it with `open`, then record as the batch runs."""

    def __init__(
        self,
        path: Path | None,
        states: dict[JobId, JobState],
        appender: Appender | None = None,
        lock: JournalLock | None = None,
    ) -> None:
        self.path = path
        self.states = states
        """Every job the journal knows, by identity (jobs no longer in the list too)."""
        self._appender = appender
        self._lock = lock
        self.closed = False
        """True once `close()` was called: nothing more can be recorded."""

    @classmethod
    def memory(cls) -> Journal:
        """A journal kept in memory only (a batch run without one)."""
        return cls(None, {})

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], jobs: Sequence[TrainingJob], *, readonly: bool = False
    ) -> Journal:
        """Lock and replay `path` (created if missing) for `jobs`; `JournalError` if unusable.

        `readonly` (a dry run) changes nothing on disk: a missing journal is not created.
        """
        path = Path(path)
        if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
            raise JournalError(f"cannot use journal {path}: it is not a regular file")
        if readonly and not path.exists():
            if not path.parent.is_dir():
                raise JournalError(f"cannot use journal {path}: its folder does not exist")
            return cls(path, {})
        try:
            lock = JournalLock.acquire(path)
        except OSError as exc:
            raise JournalError(f"cannot use journal {path}: {exc.strerror or exc}") from None
        try:
            records, upgraded = _load(path, jobs, repair=not readonly)
            states = replay(records)
            refuse_changed(path, states, jobs)
            if readonly:
                return cls(path, states, None, lock)
            if upgraded is not None:
                rewrite(path, upgraded)
            elif not records and not _has_header(path):
                rewrite(path, [encode({"type": "header", "at": _now()})])
            return cls(path, states, Appender(path), lock)
        except OSError as exc:
            lock.release()
            raise JournalError(f"cannot use journal {path}: {exc.strerror or exc}") from None
        except BaseException:
            lock.release()
            raise

    def state(self, job: TrainingJob) -> JobState:
        """The state of `job` (a fresh one if the journal has never seen it)."""
        identity = job_id(job)
        state = self.states.get(identity)
        if state is None:
            state = self.states[identity] = JobState(identity)
        return state

    def removed(self, jobs: Iterable[TrainingJob]) -> list[str]:
        """Labels of the jobs the journal knows that `jobs` no longer holds."""
        current = {job_id(job) for job in jobs}
        return [state.label for key, state in self.states.items() if key not in current]

    @property
    def fsyncs(self) -> int:
        """fsyncs made so far by this journal's writer."""
        return self._appender.fsyncs if self._appender is not None else 0

    def intent(self, job: TrainingJob) -> Waiter:
        """Record that `job` is about to be POSTed; the future resolves once it is on disk."""
        record = {"type": "intent", "at": _now(), "content": content_digest(job)}
        return self._record(job, record, durable=True)

    def created(self, job: TrainingJob, model_id: str) -> None:
        """Record that `job` created (or a lookup found) model `model_id`.

        Not fsynced on its own: the intent before it is, so if this line is lost
        (the machine, not just the process, went down) the next run looks the
        model up; the next fsync (any intent or `done`) takes it to the disk.
        """
        self._record(job, {"type": "created", "model_id": model_id, "at": _now()}, durable=False)

    def status(
        self, job: TrainingJob, model_id: str, status: str, at: datetime | None = None
    ) -> None:
        """Record a status change (not fsynced on its own: the watcher can see it again)."""
        record = {"type": "status", "model_id": model_id, "status": status, "at": at or _now()}
        self._record(job, record, durable=False)

    def done(self, job: TrainingJob, model: dict[str, Any] | None, error: str | None) -> Waiter:
        """Record that `job` is finished: its terminal model, or the refusal that proved none."""
        return self._record(job, {"type": "done", "model": model, "error": error, "at": _now()})

    async def wait(self, future: Waiter) -> None:
        """Wait until a record is on disk; a failed write is a `JournalError` (nothing lost)."""
        try:
            if future.done():  # no suspension: the usual case for an intent written ahead
                future.result()
            elif isinstance(future, asyncio.Future):
                await future
            else:
                await asyncio.wrap_future(future)
        except OSError as exc:
            raise _broken(self.path, exc) from None

    def _record(self, job: TrainingJob, record: Record, *, durable: bool = True) -> Waiter:
        state = self.state(job)
        record = {"type": record.pop("type"), "job": state.identity, **record}
        state.apply(record)
        if self._appender is None:
            return _RESOLVED
        future = self._appender.append(encode(record), durable=durable)
        return future if future is not None else _RESOLVED

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Write out what is queued, fsync, close, and release the lock."""
        self.closed = True
        try:
            if self._appender is not None:
                self._appender.close()
        except OSError as exc:
            raise _broken(self.path, exc) from None
        finally:
            if self._lock is not None:
                self._lock.release()


def _load(
    path: Path, jobs: Sequence[TrainingJob], *, repair: bool
) -> tuple[list[Record], list[bytes] | None]:
    """The journal's records (as version 2), and the lines to rewrite it with if upgraded."""
    if not path.exists():
        return [], None
    parsed = read_records(path, repair=repair)
    if not parsed:
        return [], None
    check_versions(path, parsed)
    header = parsed[0][1]
    if header["v"] == 2:
        return [record for _, record in parsed[1:]], None
    if header["fingerprint"] != jobs_fingerprint(jobs) or header["jobs"] != len(jobs):
        raise JournalError(
            f"journal {path} was written by happyrobot-async 0.1, which names jobs by their "
            f"position: it opens only with the {header['jobs']}-job list it was written for, "
            "and these jobs differ. Run it once with that jobs file to upgrade it; from then "
            "on, jobs may be added, removed or reordered"
        )
    try:
        records = migrate_v1(parsed[1:], jobs)
    except ValueError as exc:
        raise JournalError(f"journal {path}: {exc}") from None
    lines = [encode({"type": "header", "at": _now()}), *(encode(r) for r in records)]
    return records, lines


def _has_header(path: Path) -> bool:
    return path.exists() and bool(path.read_bytes().strip())


def _broken(path: Path | None, exc: OSError) -> JournalError:
    if isinstance(exc, JournalGoneError):
        return JournalError(
            f"journal {path} was removed or replaced while the batch ran, so the batch "
            "stopped: the models created so far exist, and only the journal knows which "
            "jobs they belong to. Put the file back before rerunning: a rerun without it "
            "creates those models again"
        )
    return JournalError(
        f"cannot write journal {path}: {exc.strerror or exc}; nothing is lost: "
        "free the space (or fix the permissions) and rerun the same command to resume"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def states_summary(journal: Journal, jobs: Sequence[TrainingJob]) -> dict[str, int]:
    """Jobs by journal state: done, created (to watch), sent (unconfirmed), new; and removed."""
    summary = {"done": 0, "created": 0, "sent": 0, "new": 0}
    for job in jobs:
        state = journal.states.get(job_id(job))
        if state is not None and state.done:
            summary["done"] += 1
        elif state is not None and state.model_id:
            summary["created"] += 1
        elif state is not None and state.sent_at:
            summary["sent"] += 1
        else:
            summary["new"] += 1
    summary["removed"] = len(journal.removed(jobs))
    return summary
