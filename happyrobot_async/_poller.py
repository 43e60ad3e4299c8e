"""The watcher's one poll loop: it follows every tracked model until its handle settles.

The loop asks the pure `Schedule` what is due and queues those polls (one list per
use case with two or more followed models, else one get per model) on a `PollQueue`
(which keeps a model from being polled twice at once), never waiting for them. A
poll is one one-shot read (`_pollread`): one attempt whose deadline `request_timeout`
covers the wait for a slot and the rate limiter too, no retry inside. Hung polls
holding all `MAX_CONCURRENT_POLLS` workers for an interval get more workers (up to
`MAX_POLL_WORKERS`), so they delay no other model. A list's items are sorted by
the pure `sort_listed`: an item unchanged since the last poll costs a comparison,
not a `Model`; the others are judged by the pure `judge_status`. Intervals run from
when a poll was planned. A blank use case counts as unknown (polled with gets).

Failures (the pure `judge_error` has the rules) are retried on the schedule with
backoff (a Retry-After pauses all polling), fail the model's handle, ask each model
of a list with a get of its own, or fail every handle (two 401s in a row, or an
error about the client itself, e.g. bound to another event loop).

- A closed client (`client.closed`: looked at before each request, after each
  failure, and at least every `CLOSED_CHECK_INTERVAL`) ends polling for good: each
  handle fails with `WatcherClosedError("the client was closed")`, and the change
  streams end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal

from ._handles import ChangeStreams, WatchHandle
from ._listread import sort_listed
from ._pollqueue import PollQueue
from ._pollread import WatchableClient, read_get, read_list
from ._schedule import Poll, Schedule
from ._seen import Snapshot, Snapshots
from ._settle import Action, judge_error, judge_status
from .errors import AuthenticationError, ResponseValidationError, WatcherClosedError
from .types import Model

__all__: list[str] = []

log = logging.getLogger("happyrobot_async")

#: Polls in flight at once (the client caps requests in flight too).
MAX_CONCURRENT_POLLS = 16
#: Polls in flight at most, counting workers added while hung polls hold the others.
MAX_POLL_WORKERS = 4 * MAX_CONCURRENT_POLLS
#: The longest the loop sleeps without looking whether the client was closed.
CLOSED_CHECK_INTERVAL = 1.0


class Poller:
    """Polls the models of the handles it follows, and settles each handle at its end."""

    def __init__(
        self,
        client: WatchableClient,
        schedule: Schedule,
        streams: ChangeStreams,
        *,
        request_timeout: float,
        max_retry_after: float,
    ) -> None:
        self._client = client
        self._schedule = schedule
        self._streams = streams
        self._request_timeout = request_timeout
        self._max_retry_after = max_retry_after
        self._handles: dict[str, WatchHandle] = {}
        self._task: asyncio.Task[None] | None = None
        self._waker: asyncio.Future[None] | None = None
        self._auth_failures = 0
        self._last_401 = float("-inf")  # when the last 401 arrived (loop time)
        self._bad_lists: dict[str, int] = {}  # use case -> unreadable lists in a row
        limits = MAX_CONCURRENT_POLLS, MAX_POLL_WORKERS
        self._polls = PollQueue(self._get, self._list, schedule.use_case_of, *limits)
        self._snapshots = Snapshots()  # the list items last seen, compactly
        self._failures = 0  # transient poll failures since the last summary
        self._last_failure: BaseException | None = None
        self._stopped = False

    @property
    def handles(self) -> Mapping[str, WatchHandle]:
        """The handles followed, by model id (read-only: use `follow` and `fail`)."""
        return self._handles

    @property
    def closed(self) -> bool:
        """True once the client is closed: nothing is polled any more."""
        return self._stopped or self._client.closed

    def start(self) -> None:
        """Run the loop in a task of its own until `stop()`."""
        self._task = asyncio.create_task(self._run(), name="happyrobot_async watcher")

    def halt(self) -> list[asyncio.Task[None]]:
        """Cancel the loop and the polls; return their tasks, to wait for."""
        tasks = self._polls.cancel() + ([self._task] if self._task is not None else [])
        for task in tasks:
            task.cancel()
        return tasks

    def follow(self, handle: WatchHandle, use_case_id: str | None) -> None:
        """Poll `handle`'s model from now on; a known `use_case_id` lets it share a list."""
        self._handles[handle.model_id] = handle
        now = asyncio.get_running_loop().time()
        self._schedule.add(handle.model_id, _known(use_case_id), now)
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
        while not self._client_closed():
            try:
                now = loop.time()
                for poll in self._schedule.plan(now):
                    self._polls.put(poll, now)
                self._polls.unstick(now - self._schedule.interval)
                if self._failures:
                    log.warning(
                        "%d polls failed (last: %s); their models are polled again later",
                        self._failures,
                        self._last_failure,
                    )
                    self._failures, self._last_failure = 0, None
                deadline = self._schedule.next_deadline()
                cap = now + CLOSED_CHECK_INTERVAL
                await self._sleep_until(cap if deadline is None else min(deadline, cap))
            except Exception:  # a bug, not a poll error: keep going, slowly
                log.exception("watcher loop error; continuing")
                await asyncio.sleep(self._schedule.interval)

    async def _sleep_until(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self._waker = waker = loop.create_future()
        timer = loop.call_at(deadline, _set_done, waker)
        try:
            await waker
        finally:
            self._waker = None
            timer.cancel()

    def _client_closed(self) -> bool:
        """Whether the client is closed; the first time, end every handle and all polling."""
        if self._stopped:
            return True
        if not self._client.closed:
            return False
        self._stopped = True
        log.warning("the client was closed; the watcher stops polling")
        self._polls.cancel()
        for handle in list(self._handles.values()):
            self.fail(handle, WatcherClosedError("the client was closed"))
        if self._waker is not None:
            _set_done(self._waker)
        self._streams.close()
        return True

    # -- the polls ----------------------------------------------------------------------

    def _may_send(self, poll: Poll) -> bool:
        """False if the client is closed or polling is paused (then retried at its end)."""
        now = asyncio.get_running_loop().time()  # a Retry-After may have come since planning
        return not self._client_closed() and not self._schedule.hold(poll.model_ids, now)

    async def _get(self, poll: Poll, planned: float) -> None:
        model_id = poll.model_ids[0]
        if model_id not in self._schedule or not self._may_send(poll):  # untracked meanwhile
            return
        sent = asyncio.get_running_loop().time()
        try:
            model = await read_get(self._client, model_id, self._request_timeout)
            if model.id != model_id:
                raise ResponseValidationError(
                    f"GET /models/{model_id} answered with model {model.id}", status_code=200
                )
        except Exception as exc:
            self._polls.done(poll)
            self._failed("get", (model_id,), exc, sent)
            return
        self._auth_failures = 0
        if model_id in self._schedule:
            self._schedule.set_use_case(model_id, _known(model.use_case_id))
            self._observe(model, planned, datetime.now(UTC))

    async def _list(self, poll: Poll, planned: float) -> None:
        use_case_id = poll.use_case_id
        assert use_case_id is not None
        if not self._may_send(poll):
            return
        sent = asyncio.get_running_loop().time()
        try:
            listed = await read_list(self._client, use_case_id, self._request_timeout)
        except Exception as exc:
            self._polls.done(poll)
            self._failed("list", poll.model_ids, exc, sent, use_case_id)
            return
        self._polls.done(poll)
        self._auth_failures = 0
        self._bad_lists.pop(use_case_id, None)
        at = datetime.now(UTC)
        gets_out = self._polls.gets_out
        found = sort_listed(poll.model_ids, listed, self._handles, gets_out, self._snapshots)
        for model, snapshot in found.changed:
            self._observe(model, planned, at, snapshot)
        self._schedule.record_many(use_case_id, found.same, planned)
        if found.bad:
            log.debug("list of use case %s: %d bad item(s) of ours", use_case_id, found.bad)
        self._polls.put_gets(found.unserved, asyncio.get_running_loop().time())

    def _failed(
        self,
        route: Literal["get", "list"],
        model_ids: Iterable[str],
        exc: Exception,
        sent: float,
        use_case_id: str | None = None,
    ) -> None:
        if self._client_closed():
            return
        now = asyncio.get_running_loop().time()
        fresh_401, bad_lists = sent > self._last_401, 0  # not fresh: the last 401 seen again
        if isinstance(exc, AuthenticationError):
            self._last_401 = now
        elif isinstance(exc, ResponseValidationError) and use_case_id is not None:
            bad_lists = self._bad_lists.get(use_case_id, 0)
            self._bad_lists[use_case_id] = bad_lists + 1
        auth, cap = self._auth_failures, self._max_retry_after
        verdict = judge_error(exc, route, auth, cap, fresh_401=fresh_401, bad_lists=bad_lists)
        self._auth_failures = verdict.auth_failures
        action = verdict.action
        if action is Action.FAIL:
            for model_id in model_ids:
                handle = self._handles.get(model_id)
                if handle is not None:
                    log.warning("model %s can not be watched: %s", model_id, exc)
                    self.fail(handle, exc)
        elif action is Action.ASK_EACH:
            log.warning("a list was refused (%s); asking each of its models", exc)
            self._polls.put_gets(model_ids, asyncio.get_running_loop().time())
        elif action is Action.FAIL_ALL:
            log.error("polling can not go on (%s); every watched model fails", exc)
            for handle in list(self._handles.values()):
                self.fail(handle, exc)
        else:
            self._failures += 1
            self._last_failure = exc
            if verdict.pause:
                log.warning("the API asked to wait; pausing all polling for %.1f s", verdict.pause)
                self._schedule.pause_until(now + verdict.pause)
            for model_id in model_ids:
                if model_id in self._schedule:
                    self._schedule.failed(model_id, now)

    def _observe(
        self, model: Model, planned: float, at: datetime, snapshot: Snapshot | None = None
    ) -> None:
        """Act on one polled state: reschedule, emit its change, settle its handle."""
        handle = self._handles.get(model.id)
        if handle is None:
            return
        previous = handle.observe(model, snapshot)
        verdict = judge_status(previous, model, handle.raise_on_failure, at)
        change = verdict.change
        self._schedule.record(model.id, change is not None, planned)
        if change is not None:
            self._streams.publish(change)
        if verdict.error is not None:
            self.fail(handle, verdict.error)
        elif verdict.result is not None:
            self._release(handle)
            handle.resolve(verdict.result)


def _known(use_case_id: str | None) -> str | None:
    """A use case id to group by, or None if it is unknown (or blank: no list takes it)."""
    return use_case_id if use_case_id and not use_case_id.isspace() else None


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
