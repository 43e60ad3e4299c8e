"""`TrainingWatcher`: one poll loop follows every tracked model to its end.

The watcher is the public face (settings, handles, streams, `on_change`, lifetime);
polling, and what a poll error does to the handles, is `_poller.Poller`'s.

Changes go to every `changes()` stream through a bounded buffer: when a consumer
falls `queue_size` changes behind, the *oldest* buffered change is dropped, counted
on `ChangeStream.dropped`, and a warning is logged once per overflow episode (until
the consumer empties its buffer). Polling never waits for a consumer. `on_change`
runs in one extra task, in order; an awaitable it returns is awaited before the next
change (it reads from its own stream, so the same overflow rule applies). Leaving
the watcher normally lets `on_change` finish the changes already emitted.

Each poll is one request with its own deadline (`request_timeout`), never retried
inside: a failed poll is made again on the schedule. A server's Retry-After pauses
all polling, for at most `max_retry_after` seconds. A model the server refuses
(404, 403, 400/422) or answers with something that is not that model fails alone;
see `_poller` for every rule. If the client is closed under a running watcher, the
watcher stops polling: pending handles fail with `WatcherClosedError`, streams end,
and `track` raises `WatcherClosedError`. A watcher belongs to the event loop it was
entered on: `track`, `untrack` and `changes` from any other raise `HappyRobotError`.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import math
import random
from collections.abc import Callable
from types import TracebackType
from typing import TypedDict

from ._handles import ChangeStream, ChangeStreams, WatchHandle
from ._poller import Poller
from ._pollread import WatchableClient
from ._schedule import Schedule
from .errors import HappyRobotError, InvalidRequestError, WatcherClosedError, WatchTimeoutError
from .types import Model, StatusChange, check_model_id

__all__ = ["TrainingWatcher"]

log = logging.getLogger("happyrobot_async")

OnChange = Callable[[StatusChange], object]
"""A callback for each change; it may return an awaitable, which is awaited."""


def check_poll_intervals(poll_interval: float, max_poll_interval: float) -> None:
    """Refuse intervals no schedule can keep (`InvalidRequestError` naming the field).

    An infinite interval would plan a model's next poll never: refused, not a hang.
    """
    for field, value in (
        ("poll_interval", poll_interval),
        ("max_poll_interval", max_poll_interval),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequestError(field, f"must be a number of seconds, got {value!r}")
    if not 0 < poll_interval < math.inf:
        raise InvalidRequestError("poll_interval", "must be a finite number > 0 (seconds)")
    if not poll_interval <= max_poll_interval < math.inf:
        raise InvalidRequestError("max_poll_interval", "must be finite and >= poll_interval")


class WatcherState(enum.Enum):
    """Where a watcher is in its one lifetime: `NEW → RUNNING → CLOSED`."""

    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class WatcherOptions(TypedDict, total=False):
    """`TrainingWatcher`'s keyword options, so `client.watcher(...)` takes them typed."""

    poll_interval: float
    max_poll_interval: float
    backoff_factor: float
    jitter: float
    queue_size: int
    on_change: OnChange | None
    rng: random.Random | None
    request_timeout: float
    max_retry_after: float


class TrainingWatcher:
    """Follow many models with one poll loop; use as `async with client.watcher() as w:`.

    `request_timeout` caps each poll request (seconds; a poll is one attempt, made
    again on the schedule if it fails); `max_retry_after` caps how long a server's
    Retry-After may pause all polling (seconds).
    """

    def __init__(
        self,
        client: WatchableClient,
        *,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        backoff_factor: float = 1.5,
        jitter: float = 0.1,
        queue_size: int = 10_000,
        on_change: OnChange | None = None,
        rng: random.Random | None = None,
        request_timeout: float = 10.0,
        max_retry_after: float = 120.0,
    ) -> None:
        check_poll_intervals(poll_interval, max_poll_interval)
        for field, ok, rule in (
            ("backoff_factor", backoff_factor >= 1, "must be >= 1"),
            ("jitter", 0 <= jitter < 1, "must be within [0, 1)"),
            ("queue_size", queue_size >= 1, "must be at least 1"),
            ("request_timeout", request_timeout > 0, "must be > 0 seconds"),
            ("max_retry_after", max_retry_after >= 0, "must be >= 0 seconds"),
        ):
            if not ok:
                raise InvalidRequestError(field, rule)
        schedule = Schedule(
            poll_interval, max_poll_interval, backoff_factor, jitter, rng or random.Random()
        )
        self._streams = ChangeStreams()
        self._poller = Poller(
            client,
            schedule,
            self._streams,
            request_timeout=request_timeout,
            max_retry_after=max_retry_after,
        )
        self._queue_size = queue_size
        self._on_change = on_change
        self._state = WatcherState.NEW
        self._callbacks: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifetime -----------------------------------------------------------------------

    async def __aenter__(self) -> TrainingWatcher:
        if self._state is not WatcherState.NEW:
            raise RuntimeError("a TrainingWatcher can be entered only once")
        self._state = WatcherState.RUNNING
        self._loop = asyncio.get_running_loop()
        self._poller.start()
        if self._on_change is not None:
            self._callbacks = asyncio.create_task(
                _dispatch(self.changes(), self._on_change), name="happyrobot_async on_change"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(deliver_pending=exc_type is None)

    async def aclose(self, *, deliver_pending: bool = True) -> None:
        """Stop polling; pending handles fail with `WatcherClosedError`, streams end.

        With `deliver_pending`, `on_change` still gets the changes already emitted.
        Handles and streams end before anything is awaited, so a cancelled `aclose`
        leaves none pending; cancelled while `on_change` drains, it cancels `on_change`.
        Called from `on_change` itself, it does not wait for `on_change`.
        """
        if self._state is WatcherState.CLOSED:
            return
        self._state = WatcherState.CLOSED
        polls = self._poller.halt()
        for handle in list(self._poller.handles.values()):
            self._poller.fail(handle, WatcherClosedError(f"watcher closed before {handle!r}"))
        self._streams.close()
        callbacks = self._callbacks
        if callbacks is asyncio.current_task():
            callbacks = None  # on_change closing its own watcher: it ends once it returns
        elif callbacks is not None and not deliver_pending:
            callbacks.cancel()
        try:
            if polls:
                await asyncio.wait(polls)
            if callbacks is not None:
                await asyncio.wait([callbacks])
        except asyncio.CancelledError:
            if callbacks is not None:
                callbacks.cancel()
            raise

    # -- public -------------------------------------------------------------------------

    def track(
        self, model: Model | str, *, timeout: float | None = None, raise_on_failure: bool = False
    ) -> WatchHandle:
        """Follow a model until it is terminal; the same id twice gives the same handle.

        A `Model` tells the use case (so it can share its use case's list poll); a
        bare id is first fetched with a get. `timeout` (seconds from now) fails the
        handle with `WatchTimeoutError`; `raise_on_failure` makes a `failed` model
        raise `TrainingFailedError`. A handle already done is not reused: tracking
        its id again starts a new one.
        """
        if self._state is not WatcherState.RUNNING:
            if self._state is WatcherState.CLOSED:
                raise WatcherClosedError("the watcher is closed")
            raise RuntimeError("enter the watcher first: `async with client.watcher() as w:`")
        self._check_loop()
        if self._poller.closed:
            raise WatcherClosedError("the client was closed")
        if isinstance(model, Model):
            model_id, use_case_id = check_model_id(model.id), model.use_case_id
        else:
            model_id, use_case_id = check_model_id(model), None
        handle = self._poller.handles.get(model_id)
        if handle is not None:
            return handle
        if timeout is not None and not timeout >= 0:
            raise InvalidRequestError("timeout", f"must be >= 0 seconds, got {timeout!r}")
        handle = WatchHandle(model_id, timeout, raise_on_failure)
        if timeout is not None:
            loop = asyncio.get_running_loop()
            handle.set_timer(loop.call_later(timeout, self._expire, handle))
        self._poller.follow(handle, use_case_id)
        return handle

    def untrack(self, model_id: str) -> None:
        """Stop following a model; its handle fails with `WatcherClosedError` if pending."""
        self._check_loop()
        handle = self._poller.handles.get(model_id)
        if handle is not None:
            self._poller.fail(handle, WatcherClosedError(f"model {model_id} was untracked"))

    def changes(self, *, queue_size: int | None = None) -> ChangeStream:
        """A new stream of every change from now on; it ends when the watcher closes.

        It buffers up to `queue_size` changes (default: the watcher's), then drops
        the oldest.
        """
        size = self._queue_size if queue_size is None else queue_size
        if size < 1:
            raise InvalidRequestError("queue_size", "must be at least 1")
        self._check_loop()
        stream = ChangeStream(size)
        if self._state is WatcherState.CLOSED or self._poller.closed:
            stream.close()
        else:
            self._streams.add(stream)
        return stream

    def __repr__(self) -> str:
        return f"<TrainingWatcher {self._state.name.lower()}, {len(self)} models tracked>"

    def __len__(self) -> int:
        return len(self._poller.handles)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._poller.handles

    def _check_loop(self) -> None:
        """Refuse a call from any thread or event loop but the one the watcher runs on."""
        if self._loop is None:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not self._loop:
            raise HappyRobotError(
                "the watcher is bound to the event loop it was entered on; "
                "use it from that loop only"
            )

    # -- reported by the poll loop and the deadlines -------------------------------------

    def _expire(self, handle: WatchHandle) -> None:
        assert handle.timeout is not None
        error = WatchTimeoutError(handle.model_id, handle.model, handle.timeout)
        self._poller.fail(handle, error)


async def _dispatch(stream: ChangeStream, callback: OnChange) -> None:
    """Feed `on_change` one change at a time; its errors are logged, never raised.

    A `CancelledError` out of `on_change` while this task is not being cancelled
    (e.g. it awaited a task someone else cancelled) is one of its errors too.
    """
    task = asyncio.current_task()
    async for change in stream:
        try:
            result = callback(change)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            if task is None or task.cancelling():
                raise
            log.exception("on_change callback was cancelled on %s", change)
        except Exception:
            log.exception("on_change callback failed on %s", change)
