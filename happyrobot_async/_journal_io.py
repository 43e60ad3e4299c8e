"""The journal's file handling: one runner's lock, reading lines, and a writer thread.

- `JournalLock`: `fcntl.flock(LOCK_EX | LOCK_NB)` on `<journal>.lock`, taken before
  the journal is read and held until it is closed; the holder's pid is written
  into it, so a second runner is told who holds it. The kernel drops the lock
  with its process, so a killed runner leaves no stale lock.
- `read_lines`: the journal's lines, with a torn last line (a crash mid-write)
  dropped and cut from the file; `read_records` parses them, header first, and
  `check_versions` that every record is of the header's version.
- `Appender`: appends lines on its own thread, so the event loop never waits on
  the disk. Lines that must be durable get a future, resolved once they are
  fsynced; everything waiting is written and fsynced together (group commit).
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from ._journal_records import Record, parse
from .errors import JournalError

__all__: list[str] = []


class JournalLock:
    """The exclusive lock of one journal, held by one runner (see the module docstring)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, journal: Path) -> JournalLock:
        """Lock `journal` for this process; `JournalError` naming the holder if another has it."""
        path = journal.with_name(journal.name + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise JournalError(
                f"journal {journal} is in use by another runner (pid {holder}); "
                "one runner per journal: wait for it to end (or stop it), then rerun"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Let the next runner in (the file stays: removing it would race with one)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def read_lines(path: Path, *, repair: bool, complete: Callable[[bytes], bool]) -> list[bytes]:
    """Every line of `path` (numbered from 1 by position); a torn last line is left out.

    The text after the last newline is a torn write unless `complete(text)`
    says it is a whole record (a hand edit without a final newline): kept,
    and with `repair`, ended with its newline. A torn line is cut from the
    file when `repair`.
    """
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()
    if tail.strip():
        whole = complete(tail)
        if whole:
            lines.append(tail)
        if repair:
            with path.open("r+b") as file:
                if whole:
                    file.seek(len(raw))
                    file.write(b"\n")
                else:
                    file.truncate(len(raw) - len(tail))
                file.flush()
                os.fsync(file.fileno())
    return lines


def read_records(path: Path, *, repair: bool) -> list[tuple[int, Record]]:
    """Each record of the journal with its line number, the header first; [] for an empty file.

    The one reading of the file for the runner and the read-only summary alike:
    `JournalError` names the first line that is not a valid record, or a first
    record that is not a header. Versions are left to `check_versions`, so that
    a caller may first turn away a version it cannot use.
    """
    parsed: list[tuple[int, Record]] = []
    for number, line in enumerate(read_lines(path, repair=repair, complete=_whole), start=1):
        if line.strip():
            try:
                parsed.append((number, parse(line)))
            except ValueError as exc:
                raise JournalError(f"journal {path}: line {number} is not valid: {exc}") from None
    if parsed and parsed[0][1]["type"] != "header":
        raise JournalError(f"journal {path}: line {parsed[0][0]} is not a journal header")
    return parsed


def check_versions(path: Path, parsed: Sequence[tuple[int, Record]]) -> None:
    """`JournalError` at the first record past the header that is a header or of another version."""
    header = parsed[0][1]
    for number, record in parsed[1:]:
        if record["type"] == "header" or record["v"] != header["v"]:
            raise JournalError(
                f"journal {path}: line {number} is not valid: a version {record['v']} "
                f"{record['type']} record in a version {header['v']} journal"
            )


def _whole(line: bytes) -> bool:
    """Whether the text after the last newline is a whole record (see `read_lines`)."""
    try:
        parse(line)
    except ValueError:
        return False
    return True


def rewrite(path: Path, lines: Sequence[bytes]) -> None:
    """Replace `path` with `lines`, atomically and durably (a crash leaves old or new)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.writelines(lines)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


_Item = tuple[bytes, "Future[None] | None"]
_STOP = (b"", None)


class Appender:
    """Appends lines to a file on its own thread; durable lines resolve a future once fsynced.

    A write or fsync that fails (a full disk) fails every waiting future and every
    later one with that `OSError`: what was not written is simply not in the
    journal, as if the runner had been killed there.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.error: OSError | None = None
        self.fsyncs = 0
        """How many fsyncs were made (group commit makes it far fewer than durable lines)."""
        self._thread = threading.Thread(target=self._run, name="happyrobot-journal", daemon=True)
        self._thread.start()
        self._closed = False

    def append(self, line: bytes, *, durable: bool) -> Future[None] | None:
        """Queue `line`; with `durable`, a future resolved once it is on disk."""
        if self._closed:
            raise RuntimeError("the journal is closed")
        future: Future[None] | None = Future() if durable else None
        if self.error is not None:
            if future is not None:
                future.set_exception(self.error)
            return future
        self._queue.put((line, future))
        return future

    def close(self) -> None:
        """Write and fsync what is queued, stop the thread, close the file; raise its error."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
            try:
                self._file.close()
            except OSError as exc:  # what a full disk left in the buffer
                self.error = self.error or exc
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            items = [item for item in batch if item is not _STOP]
            self._write(items, sync=stop or any(future for _, future in items))

    def _write(self, items: list[_Item], *, sync: bool) -> None:
        if self.error is None:
            try:
                self._file.write(b"".join(line for line, _ in items))
                self._file.flush()
                if sync:
                    os.fsync(self._file.fileno())
                    self.fsyncs += 1
            except OSError as exc:
                self.error = exc
        for _, future in items:
            if future is not None and future.set_running_or_notify_cancel():
                # (a future whose waiter was cancelled is cancelled: nobody is told)
                if self.error is not None:
                    future.set_exception(self.error)
                else:
                    future.set_result(None)
