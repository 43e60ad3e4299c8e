"""The watcher's one poll loop: it follows every tracked model until its handle settles.

Each tick asks the pure `Schedule` what is due and makes those polls (one list per
use case with two or more followed models, else one get per model), at most
`MAX_CONCURRENT_POLLS` at once. What a poll saw is judged by the pure `judge`: the
change goes to the watcher's `publish`, the handle settles or stays followed, and
the schedule learns whether anything changed. Between ticks the loop sleeps until
the schedule's next deadline or until `follow()` wakes it.

Failures: a poll error is logged and its models back off (a failed list is retried
as a list next time, not split into gets); an error with `retry_after` (429, 503)
pauses all polling that long; two 401s in a row with no success between fail every
handle with `AuthenticationError`; a 404 fails that model's handle with
`NotFoundError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from ._handles import WatchHandle
from ._schedule import Poll, Schedule
from ._settle import judge
from .errors import APIStatusError, AuthenticationError, NotFoundError
from .types import Model, StatusChange

__all__: list[str] = []

log = logging.getLogger("happyrobot_async")

#: Polls of one tick in flight at once (the client caps requests in flight too).
MAX_CONCURRENT_POLLS = 16
#: Consecutive polls answered 401 before every handle fails with AuthenticationError.
AUTH_FAILURES_TO_GIVE_UP = 2


class ModelReader(Protocol):
    """The two reads the poll loop needs (`client.models`)."""

    async def get(self, model_id: str) -> Model: ...

    async def list(self, *, use_case_id: str | None = None) -> Sequence[Model]: ...


class WatchableClient(Protocol):
    """Anything with a `models` reader, e.g. `HappyRobotClient`."""

    @property
    def models(self) -> ModelReader: ...


class Poller:
    """Polls the models of the handles it follows, and settles each handle at its end."""

    def __init__(
        self,
        client: WatchableClient,
        schedule: Schedule,
        publish: Callable[[StatusChange], None],
    ) -> None:
        self._client = client
        self._schedule = schedule
        self._publish = publish
        self._handles: dict[str, WatchHandle] = {}
        self._task: asyncio.Task[None] | None = None
        self._waker: asyncio.Future[None] | None = None
        self._auth_failures = 0

    @property
    def handles(self) -> Mapping[str, WatchHandle]:
        """The handles followed, by model id (read-only: use `follow` and `fail`)."""
        return self._handles

    def start(self) -> None:
        """Run the loop in a task of its own until `stop()`."""
        self._task = asyncio.create_task(self._run(), name="happyrobot_async watcher")

    async def stop(self) -> None:
        """Cancel the loop and wait until it is over (polls in flight are abandoned)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    def follow(self, handle: WatchHandle, use_case_id: str | None) -> None:
        """Poll `handle`'s model from now on; a known `use_case_id` lets it share a list."""
        self._handles[handle.model_id] = handle
        self._schedule.add(handle.model_id, use_case_id, asyncio.get_running_loop().time())
        if self._waker is not None:
            _set_done(self._waker)

    def fail(self, handle: WatchHandle, error: Exception) -> None:
        """Stop following `handle`'s model and end the handle with `error`."""
        self._release(handle)
        handle.fail(error)

    def _release(self, handle: WatchHandle) -> None:
        if self._handles.get(handle.model_id) is handle:
            del self._handles[handle.model_id]
            self._schedule.remove(handle.model_id)

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
        """Make one poll and act on what it saw; a failure is returned, never raised.

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
                self.fail(handle, exc)
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
                    self.fail(handle, exc)
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
        """Act on one polled state: reschedule, emit its change, settle its handle."""
        handle = self._handles.get(model.id)
        if handle is None:
            return
        verdict = judge(handle.observe(model), model, handle.raise_on_failure, at)
        change = verdict.change
        self._schedule.record(model.id, change is not None, planned)
        if change is not None:
            self._publish(change)
        if verdict.error is not None:
            self.fail(handle, verdict.error)
        elif verdict.result is not None:
            self._release(handle)
            handle.resolve(verdict.result)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
