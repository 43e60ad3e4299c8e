"""The journal's writer: appends lines on a thread of its own, so the event loop never
waits on the disk.

Lines that must be durable get a waiter, resolved once they are fsynced;
everything waiting is written and fsynced together (group commit). After each
fsync the writer checks that the journal's path still names the file it writes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TypeAlias

from .errors import JournalError

__all__: list[str] = []


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
        if side is None:  # a new loop: first, what ended loops left behind
            self._rescue_closed()
            side = self._sides[loop] = _Side(loop)
        side.held.append((line, waiter))
        if len(side.held) == 1 and not side.out:
            loop.call_soon(self._send, side)
        return waiter

    def _rescue_closed(self) -> None:
        """Write the lines of loops closed before they could send them (a callback from
        the thread to a stopped loop is dropped when it closes); their waiters are gone."""
        for loop, side in list(self._sides.items()):
            if loop.is_closed():
                del self._sides[loop]
                if side.held:
                    held, side.held = side.held, []
                    self._queue.put((held, None))

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
