"""What a watcher hands out: a `WatchHandle` per model and a `ChangeStream` per subscriber."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Generator
from typing import Any

from .types import Model, ModelStatus, StatusChange

__all__ = ["ChangeStream", "WatchHandle"]

log = logging.getLogger("happyrobot_async")


class WatchHandle:
    """One tracked model: await it for the final `Model`; `.model` is the last state seen.

    Cancelling a task that awaits the handle leaves the handle (and its other
    awaiters, and the watching) untouched.
    """

    __slots__ = ("_future", "_model", "_timer", "model_id", "raise_on_failure", "timeout")

    def __init__(
        self, model_id: str, future: asyncio.Future[Model], timeout: float | None, raises: bool
    ) -> None:
        self.model_id = model_id
        self.timeout = timeout
        self.raise_on_failure = raises
        self._future = future
        self._model: Model | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def model(self) -> Model | None:
        """The last state polled, or None before the first poll."""
        return self._model

    @property
    def status(self) -> ModelStatus | None:
        """The last status polled, or None before the first poll."""
        return None if self._model is None else self._model.status

    def done(self) -> bool:
        """True once the handle has its final model or its error."""
        return self._future.done()

    def __await__(self) -> Generator[Any, None, Model]:
        return asyncio.shield(self._future).__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else (self.status or "not seen yet")
        return f"<WatchHandle {self.model_id} {state}>"


class ChangeStream:
    """One subscriber's changes, from subscription on; iteration ends when the watcher closes."""

    __slots__ = ("__weakref__", "_buffer", "_closed", "_overflowing", "_size", "_waiter", "dropped")

    def __init__(self, size: int) -> None:
        self._buffer: deque[StatusChange] = deque()
        self._size = size
        self._closed = False
        self._overflowing = False
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        """Changes dropped (oldest first) because this consumer fell `queue_size` behind."""

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> StatusChange:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        change = self._buffer.popleft()
        if not self._buffer:
            self._overflowing = False
        return change

    def close(self) -> None:
        """Stop receiving; what is buffered is still delivered, then iteration ends."""
        self._closed = True
        self._wake()

    def _push(self, change: StatusChange) -> None:
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
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
