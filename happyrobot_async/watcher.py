"""`TrainingWatcher`: one poll loop follows every tracked model to its end.

The loop asks the pure `Schedule` what is due, makes the polls (one list per use
case with two or more tracked models, else one get per model), records what it saw,
emits a `StatusChange` per transition and settles handles. It sleeps until the
schedule's next deadline or until `track()` wakes it.

Changes go to every `changes()` stream through a bounded buffer: when a consumer
falls `queue_size` changes behind, the *oldest* buffered change is dropped, counted
on `ChangeStream.dropped`, and a warning is logged once per overflow episode (until
the consumer empties its buffer). Polling never waits for a consumer. `on_change`
runs in one extra task, in order; an awaitable it returns is awaited before the next
change (it reads from its own stream, so the same overflow rule applies). Leaving
the watcher normally lets `on_change` finish the changes already emitted.

Failures: a poll error is logged and its models back off (a failed list is retried
as a list next time, not split into gets); an error with `retry_after` (429, 503)
pauses all polling that long; two 401s in a row with no success between fail every
handle with `AuthenticationError`; a 404 fails that model's handle with
`NotFoundError`. A handle's error counts as retrieved, so handles nobody awaits
cause no "exception was never retrieved" noise.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

from ._handles import ChangeStream, WatchHandle
from ._schedule import Poll, Schedule
from .errors import (
    APIStatusError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    TrainingFailedError,
    WatcherClosedError,
    WatchTimeoutError,
)
from .types import Model, ModelStatus, StatusChange, check_model_id

__all__ = ["ChangeStream", "TrainingWatcher", "WatchHandle", "wait_for_model", "watch_models"]

log = logging.getLogger("happyrobot_async")

#: Polls of one tick in flight at once (the client caps requests in flight too).
MAX_CONCURRENT_POLLS = 16
#: Consecutive polls answered 401 before every handle fails with AuthenticationError.
AUTH_FAILURES_TO_GIVE_UP = 2


class ModelReader(Protocol):
    """The two reads the watcher needs (`client.models`)."""

    async def get(self, model_id: str) -> Model: ...

    async def list(self, *, use_case_id: str | None = None) -> Sequence[Model]: ...


class WatchableClient(Protocol):
    """Anything with a `models` reader, e.g. `HappyRobotClient`."""

    @property
    def models(self) -> ModelReader: ...


OnChange = Callable[[StatusChange], object]
"""A callback for each change; it may return an awaitable, which is awaited."""


class TrainingWatcher:
    """Follow many models with one poll loop; use as `async with client.watcher() as w:`."""

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
    ) -> None:
        for field, ok, rule in (
            ("poll_interval", poll_interval > 0, "must be > 0"),
            ("max_poll_interval", max_poll_interval >= poll_interval, "must be >= poll_interval"),
            ("backoff_factor", backoff_factor >= 1, "must be >= 1"),
            ("jitter", 0 <= jitter < 1, "must be within [0, 1)"),
            ("queue_size", queue_size >= 1, "must be at least 1"),
        ):
            if not ok:
                raise InvalidRequestError(field, rule)
        self._schedule = Schedule(
            poll_interval, max_poll_interval, backoff_factor, jitter, rng or random.Random()
        )
        self._client = client
        self._queue_size = queue_size
        self._on_change = on_change
        self._handles: dict[str, WatchHandle] = {}
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        self._state = "new"
        self._task: asyncio.Task[None] | None = None
        self._callbacks: tuple[ChangeStream, asyncio.Task[None]] | None = None
        self._waker: asyncio.Future[None] | None = None
        self._auth_failures = 0

    # -- lifetime -----------------------------------------------------------------------

    async def __aenter__(self) -> TrainingWatcher:
        if self._state != "new":
            raise RuntimeError("a TrainingWatcher can be entered only once")
        self._state = "running"
        self._task = asyncio.create_task(self._run(), name="happyrobot_async watcher")
        if self._on_change is not None:
            stream = self.changes()
            task = asyncio.create_task(
                self._dispatch(stream, self._on_change), name="happyrobot_async on_change"
            )
            self._callbacks = (stream, task)
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
        """
        if self._state == "closed":
            return
        self._state = "closed"
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        for handle in list(self._handles.values()):
            self._settle(handle, error=WatcherClosedError(f"watcher closed before {handle!r}"))
        for stream in list(self._streams):
            stream.close()
        if self._callbacks is not None:
            _, task = self._callbacks
            if not deliver_pending:
                task.cancel()
            await asyncio.wait([task])

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
        if self._state != "running":
            if self._state == "closed":
                raise WatcherClosedError("the watcher is closed")
            raise RuntimeError("enter the watcher first: `async with client.watcher() as w:`")
        if isinstance(model, Model):
            model_id, use_case_id = model.id, model.use_case_id
        else:
            model_id, use_case_id = check_model_id(model), None
        handle = self._handles.get(model_id)
        if handle is not None:
            return handle
        if timeout is not None and not timeout >= 0:
            raise InvalidRequestError("timeout", f"must be >= 0 seconds, got {timeout!r}")
        loop = asyncio.get_running_loop()
        handle = WatchHandle(model_id, loop.create_future(), timeout, raise_on_failure)
        if timeout is not None:
            handle._timer = loop.call_later(timeout, self._expire, handle)
        self._handles[model_id] = handle
        self._schedule.add(model_id, use_case_id, loop.time())
        self._wake()
        return handle

    def untrack(self, model_id: str) -> None:
        """Stop following a model; its handle fails with `WatcherClosedError` if pending."""
        handle = self._handles.get(model_id)
        if handle is not None:
            self._settle(handle, error=WatcherClosedError(f"model {model_id} was untracked"))

    def changes(self, *, queue_size: int | None = None) -> ChangeStream:
        """A new stream of every change from now on; it ends when the watcher closes.

        It buffers up to `queue_size` changes (default: the watcher's), then drops
        the oldest.
        """
        size = self._queue_size if queue_size is None else queue_size
        if size < 1:
            raise InvalidRequestError("queue_size", "must be at least 1")
        stream = ChangeStream(size)
        if self._state == "closed":
            stream.close()
        else:
            self._streams.add(stream)
        return stream

    def __len__(self) -> int:
        return len(self._handles)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._handles

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                now = loop.time()
                polls = self._schedule.plan(now)
                if polls:
                    await self._tick(polls, now)
                else:
                    await self._sleep_until(self._schedule.next_deadline())
            except Exception:  # a bug, not a poll error: keep going, slowly
                log.exception("watcher loop error; continuing")
                await asyncio.sleep(self._schedule.interval)

    async def _sleep_until(self, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._waker = waker = loop.create_future()
        timer = None if deadline is None else loop.call_at(deadline, _set_done, waker)
        try:
            await waker
        finally:
            self._waker = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._waker is not None:
            _set_done(self._waker)

    async def _tick(self, polls: list[Poll], planned: float) -> None:
        failures: list[BaseException] = []
        pending = iter(polls)

        async def worker() -> None:
            for poll in pending:
                resume = self._schedule.paused_until
                if resume is not None and resume > asyncio.get_running_loop().time():
                    self._retry_at(poll.model_ids, resume)  # a Retry-After came mid-tick
                    continue
                error = await self._poll(poll, planned)
                if error is not None:
                    failures.append(error)

        workers = min(MAX_CONCURRENT_POLLS, len(polls))
        if workers == 1:
            await worker()
        else:
            await asyncio.gather(*(worker() for _ in range(workers)))
        if failures:
            log.warning(
                "%d of %d polls failed (%s); retrying them later",
                len(failures),
                len(polls),
                failures[0],
            )

    async def _poll(self, poll: Poll, planned: float) -> BaseException | None:
        """Make one poll and record what it saw; a failure is returned, never raised.

        Intervals run from when a poll was planned, so neither planning 10,000 models
        nor a slow response stretches the cycle (a change is seen within one interval
        plus one round trip).
        """
        try:
            if poll.kind == "get":
                await self._get(poll.model_ids[0], planned)
                return None
            assert poll.use_case_id is not None
            models = await self._client.models.list(use_case_id=poll.use_case_id)
        except Exception as exc:
            self._failed(poll.model_ids, exc)
            return exc
        self._auth_failures = 0
        at = datetime.now(UTC)
        by_id = {model.id: model for model in models}
        missing = []
        for model_id in poll.model_ids:
            model = by_id.get(model_id)
            if model is None:
                missing.append(model_id)
            else:
                self._observe(model, planned, at)
        for model_id in missing:  # gone from its use case's list: ask for it directly
            if model_id in self._handles:
                try:
                    await self._get(model_id)
                except Exception as exc:
                    self._failed((model_id,), exc)
        return None

    async def _get(self, model_id: str, planned: float | None = None) -> None:
        if planned is None:  # a follow-up get, not a planned poll
            planned = asyncio.get_running_loop().time()
        try:
            model = await self._client.models.get(model_id)
        except NotFoundError as exc:
            self._auth_failures = 0
            handle = self._handles.get(model_id)
            if handle is not None:
                self._settle(handle, error=exc)
            return
        self._auth_failures = 0
        if model_id in self._schedule:
            self._schedule.set_use_case(model_id, model.use_case_id)
            self._observe(model, planned, datetime.now(UTC))

    def _failed(self, model_ids: Iterable[str], exc: Exception) -> None:
        now = asyncio.get_running_loop().time()
        if isinstance(exc, AuthenticationError):
            self._auth_failures += 1
            if self._auth_failures >= AUTH_FAILURES_TO_GIVE_UP:
                log.error("the API refuses the key (%s); every watched model fails", exc)
                for handle in list(self._handles.values()):
                    self._settle(handle, error=exc)
                return
        retry_after = exc.retry_after if isinstance(exc, APIStatusError) else None
        if retry_after is not None:
            log.warning("the API asked to wait %.1f s; pausing all polling", retry_after)
            self._schedule.pause_until(now + retry_after)
            self._retry_at(model_ids, now + retry_after)
            return
        for model_id in model_ids:
            if model_id in self._schedule:
                self._schedule.failed(model_id, now)

    def _retry_at(self, model_ids: Iterable[str], when: float) -> None:
        for model_id in model_ids:
            if model_id in self._schedule:
                self._schedule.retry_at(model_id, when)

    def _observe(self, model: Model, planned: float, at: datetime) -> None:
        handle = self._handles.get(model.id)
        if handle is None:
            return
        previous, handle._model = handle._model, model
        if self._schedule.record(model.id, model.raw_status, planned):
            was = None if previous is None else previous.status
            change = StatusChange(model, was, model.status, at)
            for stream in self._streams:
                stream._push(change)
        if model.status is ModelStatus.FAILED and handle.raise_on_failure:
            self._settle(handle, error=TrainingFailedError(model))
        elif model.status.is_terminal:
            self._settle(handle, result=model)

    def _expire(self, handle: WatchHandle) -> None:
        assert handle.timeout is not None
        error = WatchTimeoutError(handle.model_id, handle.model, handle.timeout)
        self._settle(handle, error=error)

    def _settle(
        self, handle: WatchHandle, *, result: Model | None = None, error: Exception | None = None
    ) -> None:
        """Stop following a handle's model and give the handle its outcome."""
        if self._handles.get(handle.model_id) is handle:
            del self._handles[handle.model_id]
            self._schedule.remove(handle.model_id)
        if handle._timer is not None:
            handle._timer.cancel()
            handle._timer = None
        future = handle._future
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
            future.exception()  # the error is the awaiter's to see; no "never retrieved" noise
        else:
            assert result is not None
            future.set_result(result)

    @staticmethod
    async def _dispatch(stream: ChangeStream, callback: OnChange) -> None:
        async for change in stream:
            try:
                result = callback(change)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_change callback failed on %s", change)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_for_model(
    client: WatchableClient,
    model_id: str,
    *,
    timeout: float | None = None,
    poll_interval: float = 2.0,
    raise_on_failure: bool = False,
) -> Model:
    """Poll one model until it is `active` or `failed`; return its final state."""
    check_model_id(model_id)
    async with TrainingWatcher(
        client, poll_interval=poll_interval, max_poll_interval=max(30.0, poll_interval)
    ) as watcher:
        return await watcher.track(model_id, timeout=timeout, raise_on_failure=raise_on_failure)


async def watch_models(
    client: WatchableClient, model_ids: Iterable[str], *, poll_interval: float = 2.0
) -> AsyncGenerator[StatusChange, None]:
    """Every status change of these models, until all of them are terminal.

    If a model cannot be watched (e.g. `NotFoundError`), its error is raised once the
    changes already seen are yielded. Close the iterator early with `aclosing()`.
    """
    ids = list(dict.fromkeys(check_model_id(model_id) for model_id in model_ids))
    if not ids:
        return
    async with TrainingWatcher(
        client,
        poll_interval=poll_interval,
        max_poll_interval=max(30.0, poll_interval),
        queue_size=max(10_000, 16 * len(ids)),
    ) as watcher:
        stream = watcher.changes()
        handles = [watcher.track(model_id) for model_id in ids]
        remaining = len(handles)

        def settled(future: asyncio.Future[Model]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 or future.exception() is not None:
                stream.close()

        for handle in handles:
            handle._future.add_done_callback(settled)
        async for change in stream:
            yield change
        for handle in handles:
            if handle.done() and (error := handle._future.exception()) is not None:
                raise error
