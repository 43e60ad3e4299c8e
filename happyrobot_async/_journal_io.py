"""The journal's file handling: one runner's lock, reading lines, and a writer thread.

- `JournalLock`: `fcntl.flock(LOCK_EX | LOCK_NB)` on `<journal>.lock`, taken before
  the journal is read and held until it is closed; the holder's pid is written
  into it, so a second runner is told who holds it. The kernel drops the lock
  with its process, so a killed runner leaves no stale lock.
- `read_lines`: the journal's lines, with a torn last line (a crash mid-write)
  dropped and cut from the file; `read_records` parses them, header first, and
  `check_versions` that every record is of the header's version.
- `Appender`: appends lines on its own thread, so the event loop never waits on
  the disk. Lines that must be durable get a waiter, resolved once they are
  fsynced; everything waiting is written and fsynced together (group commit).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TypeAlias

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
    """Replace `path` with `lines`, atomically and durably (a crash leaves old or new).

    Through a symlink, the file it points to is replaced, and the link kept.
    """
    path = Path(os.path.realpath(path))
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


Waiter: TypeAlias = "asyncio.Future[None] | Future[None]"
"""Resolved once a durable line is on disk: an asyncio future on an event loop, else a thread's."""
_Item: TypeAlias = tuple[bytes, "Waiter | None"]
_Batch: TypeAlias = tuple[list[_Item], "_Side | None"]
_STOP: _Batch = ([], None)


class JournalGoneError(OSError):
    """The journal's file was removed or replaced while the batch ran: what it records is lost."""


class _Side:
    """One event loop's lines on their way to the writer thread: one batch out at a time."""

    __slots__ = ("held", "loop", "out")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.held: list[_Item] = []
        self.out = False


class Appender:
    """Appends lines to a file on its own thread; durable lines resolve a waiter once fsynced.

    Group commit, made for an event loop's rate of small lines: each loop has at
    most one batch with the thread at a time, and what it appends meanwhile waits
    to go as its next batch, with one write and (if a line in it must be durable)
    one fsync. The thread tells the loop with one callback per batch, which
    resolves the batch's waiters. So the thread takes the GIL a few times per
    batch, not per line: each time it does, a busy loop must let go of it.

    A write or fsync that fails (a full disk), or a file found removed or replaced
    at an fsync, fails every waiting future and every later one with that
    `OSError`: what was not written is simply not in the journal, as if the
    runner had been killed there.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(os.path.abspath(path))  # the same file if the process changes folder
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._queue: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._sides: dict[asyncio.AbstractEventLoop, _Side] = {}
        self.error: OSError | None = None
        self.fsyncs = 0
        """How many fsyncs were made (group commit makes it far fewer than durable lines)."""
        self._thread = threading.Thread(target=self._run, name="happyrobot-journal", daemon=True)
        self._thread.start()
        self.closed = False

    def append(self, line: bytes, *, durable: bool) -> Waiter | None:
        """Queue `line`; with `durable`, a waiter resolved once it is on disk."""
        if self.closed:
            raise JournalError(f"journal {self._path} is closed")
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        waiter: Waiter | None = None
        if durable:
            waiter = loop.create_future() if loop is not None else Future()
        if self.error is not None:
            if waiter is not None:
                _settle(waiter, self.error)
            return waiter
        if loop is None:
            self._queue.put(([(line, waiter)], None))
            return waiter
        side = self._sides.get(loop)
        if side is None:
            side = self._sides[loop] = _Side(loop)
        side.held.append((line, waiter))
        if len(side.held) == 1 and not side.out:
            loop.call_soon(self._send, side)
        return waiter

    def _send(self, side: _Side) -> None:
        """Give the thread what `side` holds, unless a batch of it is still out."""
        if side.held and not side.out:
            held, side.held = side.held, []
            side.out = True
            self._queue.put((held, side))

    def _written(
        self, side: _Side, waiters: list[asyncio.Future[None]], error: OSError | None
    ) -> None:
        """On `side`'s loop: its batch is on disk (or failed); send what came meanwhile."""
        side.out = False
        for waiter in waiters:
            if not waiter.done():  # (a waiter cancelled with its task: nobody is told)
                _settle(waiter, error)
        if not self.closed:
            self._send(side)

    def close(self) -> None:
        """Write and fsync what is queued, stop the thread, close the file; raise its error."""
        if not self.closed:
            self.closed = True
            for side in list(self._sides.values()):
                side.out = False
                self._send(side)
            self._queue.put(_STOP)
            self._thread.join()
            os.close(self._fd)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        stop = False
        while not stop:
            batches = [self._queue.get()]
            while True:
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(batch is _STOP for batch in batches)
            items = [item for lines, _ in batches for item in lines]
            self._write(items, sync=stop or any(waiter for _, waiter in items))
            for lines, side in batches:
                if side is not None:
                    self._tell(side, lines)

    def _tell(self, side: _Side, lines: list[_Item]) -> None:
        """Tell `side`'s loop its batch is written; a closed loop's held lines are written now."""
        waiters = [waiter for _, waiter in lines if isinstance(waiter, asyncio.Future)]
        try:
            side.loop.call_soon_threadsafe(self._written, side, waiters, self.error)
        except RuntimeError:  # its loop is closed: nobody waits, and nobody would send the rest
            self._sides.pop(side.loop, None)
            held, side.held = side.held, []
            if held:
                self._write(held, sync=True)

    def _write(self, items: list[_Item], *, sync: bool) -> None:
        """Write `items` (and fsync with `sync`); settle their thread futures."""
        if self.error is None:
            try:
                data = b"".join(line for line, _ in items)
                while data:  # a regular file takes it all at once; anything else may not
                    data = data[os.write(self._fd, data) :]
                if sync:
                    os.fsync(self._fd)
                    self.fsyncs += 1
                    self._check_still_there()
            except OSError as exc:
                self.error = exc
        for _, waiter in items:
            if isinstance(waiter, Future) and waiter.set_running_or_notify_cancel():
                _settle(waiter, self.error)

    def _check_still_there(self) -> None:
        """`JournalGoneError` if the path no longer names the file written (removed, moved)."""
        written = os.fstat(self._fd)
        try:
            named = os.stat(self._path)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (written.st_dev, written.st_ino):
            raise JournalGoneError(errno.ENOENT, "the file was removed or replaced while in use")


def _settle(waiter: Waiter, error: OSError | None) -> None:
    if error is None:
        waiter.set_result(None)
        return
    waiter.set_exception(error)
    # A waiter nobody awaits any more (its task was cancelled) must not be logged
    # as "exception never retrieved": the error is raised by `close()` all the same.
    waiter.exception()
