"""What a watcher hands out: a `WatchHandle` per model, a `ChangeStream` per subscriber.

Each one owns its state: the poll loop only reports to it (`observe`, `resolve`,
`fail`, `publish`), so nothing outside this module writes their attributes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from ._seen import Shape, Snapshot, Values, raw_status, rebuild, unchanged
from .types import Model, ModelStatus, StatusChange

__all__ = ["ChangeStream", "WatchHandle"]

log = logging.getLogger("happyrobot_async")


class WatchHandle:
    """One tracked model: await it for the final `Model`; `.model` is the last state seen.

    Cancelling a task that awaits the handle leaves the handle (and its other
    awaiters, and the watching) untouched.

    Its future is made when first needed (awaited, or given a callback): a watcher
    of many models mostly reads their changes, and a future per model would be a
    good part of its memory. The handle belongs to the event loop it was made on.
    """

    __slots__ = (
        "_done",
        "_error",
        "_future",
        "_loop",
        "_model",
        "_shape",
        "_timer",
        "_values",
        "model_id",
        "raise_on_failure",
        "timeout",
    )

    def __init__(
        self, model_id: str, timeout: float | None = None, raise_on_failure: bool = False
    ) -> None:
        self.model_id = model_id
        self.timeout = timeout
        self.raise_on_failure = raise_on_failure
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[Model] | None = None  # made by `_promise`
        self._done = False
        self._error: Exception | None = None
        # the last state seen (the final one once done): a `Model`, or the snapshot of its
        # list item
        self._model: Model | None = None
        self._shape: Shape | None = None
        self._values: Values | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def model(self) -> Model | None:
        """The last state polled, or None before the first poll."""
        if self._values is not None:
            assert self._shape is not None
            return rebuild(self._shape, self._values)
        return self._model

    @property
    def status(self) -> ModelStatus | None:
        """The last status polled, or None before the first poll."""
        if self._values is not None:
            assert self._shape is not None
            return ModelStatus(raw_status(self._shape, self._values))
        return None if self._model is None else self._model.status

    def done(self) -> bool:
        """True once the handle has its final model or its error."""
        return self._done

    def exception(self) -> BaseException | None:
        """The error the handle ended with, or None if it ended with a model.

        Like `asyncio.Future.exception`, it raises `InvalidStateError` before `done()`.
        """
        if not self._done:
            raise asyncio.InvalidStateError("Exception is not set.")
        return self._error

    def add_done_callback(self, callback: Callable[[WatchHandle], object]) -> None:
        """Schedule `callback(handle)` for when the handle is done, as a future would."""
        self._promise().add_done_callback(lambda _: callback(self))

    # -- reported by the watcher ----------------------------------------------------------

    def observe(self, model: Model, snapshot: Snapshot | None = None) -> str | None:
        """Keep `model` as the last state seen; return the raw status seen before (None at first).

        Given the `snapshot` of the list item `model` came from, keep that instead.
        """
        if self._values is not None:
            assert self._shape is not None
            previous: str | None = raw_status(self._shape, self._values)
        else:
            previous = None if self._model is None else self._model.raw_status
        if snapshot is None:
            self._model, self._shape, self._values = model, None, None
        else:
            self._model, (self._shape, self._values) = None, snapshot
        return previous

    def unchanged(self, item: dict[str, Any]) -> bool:
        """True if the list item `item` is exactly the one whose snapshot is kept."""
        shape, values = self._shape, self._values
        return shape is not None and values is not None and unchanged(shape, values, item)

    def set_timer(self, timer: asyncio.TimerHandle) -> None:
        """Own the timer of the handle's deadline, so settling the handle cancels it."""
        self._timer = timer

    def resolve(self, model: Model) -> None:
        """End the handle with its final model (no-op if it has already ended)."""
        self._cancel_timer()
        if not self._done:
            self._done = True
            self._model, self._shape, self._values = model, None, None  # the same state
            if self._future is not None:
                self._future.set_result(model)

    def fail(self, error: Exception) -> None:
        """End the handle with `error` (no-op if it has already ended).

        The error counts as retrieved: it is the awaiter's to see, and a handle
        nobody awaits causes no "exception was never retrieved" noise.
        """
        self._cancel_timer()
        if not self._done:
            self._done, self._error = True, error
            # its final model, built once: the error's own where it carries one
            final = getattr(error, "model", None)
            if isinstance(final, Model):
                self._model, self._shape, self._values = final, None, None
            elif self._values is not None:
                self._model, self._shape, self._values = self.model, None, None
            if self._future is not None:
                self._future.set_exception(error)
                self._future.exception()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _promise(self) -> asyncio.Future[Model]:
        """The handle's future, on the handle's loop: made on first need, settled if done."""
        future = self._future
        if future is None:
            future = self._future = self._loop.create_future()
            if self._error is not None:
                future.set_exception(self._error)
                future.exception()  # retrieved: see `fail`
            elif self._done:
                assert self._model is not None
                future.set_result(self._model)
        return future

    def __await__(self) -> Generator[Any, None, Model]:
        return asyncio.shield(self._promise()).__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else (self.status or "not seen yet")
        return f"<WatchHandle {self.model_id} {state}>"


class ChangeStream:
    """One subscriber's changes, from subscription on; iteration ends when the watcher closes.

    Several tasks may read one stream: each change goes to one of them, and all of
    them end when it closes.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_closed",
        "_overflowing",
        "_size",
        "_waiters",
        "dropped",
    )

    def __init__(self, size: int) -> None:
        self._buffer: deque[StatusChange] = deque()
        self._size = size
        self._closed = False
        self._overflowing = False
        self._waiters: set[asyncio.Future[None]] = set()
        self.dropped = 0
        """Changes dropped (oldest first) because this consumer fell `queue_size` behind."""

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> StatusChange:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)
        change = self._buffer.popleft()
        if not self._buffer:
            self._overflowing = False
        return change

    def close(self) -> None:
        """Stop receiving; what is buffered is still delivered, then iteration ends."""
        self._closed = True
        self._wake()

    def publish(self, change: StatusChange) -> None:
        """Buffer a change for this subscriber (the watcher's call; ignored once closed).

        A consumer `size` changes behind loses the oldest; polling never waits for it.
        """
        if self._closed:
            return
        if len(self._buffer) >= self._size:
            self._buffer.popleft()
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                log.warning(
                    "a change consumer is %d changes behind; dropping the oldest "
                    "(%d dropped so far)",
                    self._size,
                    self.dropped,
                )
        self._buffer.append(change)
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class ChangeStreams:
    """A watcher's open `ChangeStream`s: each gets every change, and all end together.

    Held weakly: a stream its reader dropped stops costing a publish.
    """

    __slots__ = ("_streams",)

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()

    def add(self, stream: ChangeStream) -> None:
        self._streams.add(stream)

    def publish(self, change: StatusChange) -> None:
        for stream in self._streams:
            stream.publish(change)

    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()
