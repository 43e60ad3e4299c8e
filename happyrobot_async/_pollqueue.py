"""The watcher's polls between planning and their answer: queued, then in flight.

At most one poll covering a model is out at once: a use case's list is not queued
while it is out already, nor a model's get while that get or its use case's list
is. Up to `limit` workers make the queued polls; they are started as polls are
queued and end when the queue is empty, so no poll waits on another one's answer,
only for a free worker. If the oldest queued poll still waits for one after a
while (`unstick`: hung polls hold every worker), one more worker is started, up to
`max_workers` in all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from collections.abc import Set as AbstractSet

from ._schedule import Poll

__all__: list[str] = []

log = logging.getLogger("happyrobot_async")


class PollQueue:
    """Queues polls for `get(poll, planned)` or `list(poll, planned)`, run by `limit` workers.

    `max_workers` (default `limit`) bounds the workers `unstick` may add.
    """

    def __init__(
        self,
        get: Callable[[Poll, float], Awaitable[None]],
        list_: Callable[[Poll, float], Awaitable[None]],
        use_case_of: Callable[[str], str | None],
        limit: int,
        max_workers: int | None = None,
    ) -> None:
        self._get, self._list = get, list_
        self._use_case_of = use_case_of
        self._limit = limit
        self._max_workers = limit if max_workers is None else max(limit, max_workers)
        self._queue: deque[tuple[Poll, float]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._lists_out: set[str] = set()  # use cases whose list is queued or in flight
        self._gets_out: set[str] = set()  # models whose get is queued or in flight

    def put(self, poll: Poll, planned: float) -> None:
        """Queue `poll`, planned at `planned`, unless a poll covering its models is out."""
        if poll.kind == "list":
            assert poll.use_case_id is not None
            if poll.use_case_id in self._lists_out:
                return
            self._lists_out.add(poll.use_case_id)
        else:
            model_id = poll.model_ids[0]
            if model_id in self._gets_out or (
                self._lists_out and self._use_case_of(model_id) in self._lists_out
            ):
                return
            self._gets_out.add(model_id)
        self._queue.append((poll, planned))
        if len(self._workers) < self._limit:
            self._start_worker()

    def unstick(self, waited_since: float) -> None:
        """Start one more worker (up to `max_workers`) if the oldest queued poll was
        planned by `waited_since` and still waits: the workers are all held up."""
        queue = self._queue
        if queue and queue[0][1] <= waited_since and len(self._workers) < self._max_workers:
            self._start_worker()

    def _start_worker(self) -> None:
        task = asyncio.create_task(self._work(), name="happyrobot_async watcher poll")
        self._workers.add(task)

    def put_gets(self, model_ids: Iterable[str], planned: float) -> None:
        """Queue a get of each model (see `put`), e.g. those a list did not serve."""
        for model_id in model_ids:
            self.put(Poll.get(model_id), planned)

    def done(self, poll: Poll) -> None:
        """`poll` is answered (or given up): polls covering its models may be queued again."""
        if poll.kind == "get":
            self._gets_out.discard(poll.model_ids[0])
        else:
            assert poll.use_case_id is not None
            self._lists_out.discard(poll.use_case_id)

    @property
    def gets_out(self) -> AbstractSet[str]:
        """The models whose get is queued or in flight (read-only)."""
        return self._gets_out

    def cancel(self) -> list[asyncio.Task[None]]:
        """Drop the queued polls and cancel those in flight (not the caller's own task)."""
        self._queue.clear()
        current = asyncio.current_task()
        workers = [task for task in self._workers if task is not current]
        for task in workers:
            task.cancel()
        return workers

    async def _work(self) -> None:
        queue = self._queue
        try:
            while queue:
                poll, planned = queue.popleft()
                try:
                    await (self._get if poll.kind == "get" else self._list)(poll, planned)
                except Exception:  # a bug, not a poll error: the schedule polls them again
                    log.exception("watcher poll error; continuing")
                finally:
                    self.done(poll)
        finally:  # at once, not in a done callback: `put` must never count a worker that left
            self._workers.discard(asyncio.current_task())
