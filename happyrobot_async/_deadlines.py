"""Whole-request timeouts for thousands of requests a second, on a few shared timers.

aiohttp's own `ClientTimeout(total=...)` arms a timer for every request and
enters a timeout context at every read: about 7 µs a request, 7 % of a get.
Here the requests whose deadlines fall in the same tick (`TICK` seconds) share
one timer, and starting or ending a deadline is a set insertion or removal. A
deadline fires at most one tick late.

Expiry works as in `asyncio.timeout`: the request's task is cancelled, and the
cancellation becomes `TimeoutError` where the deadline ends, unless the task
was also cancelled by someone else (then the cancellation goes on).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Final

__all__: list[str] = []

#: Seconds: deadlines are rounded up to a multiple of this, and share a timer per multiple.
TICK: Final = 0.01
#: Seconds (about 30 years): a longer timeout is this one, so tick numbers stay finite.
LONGEST: Final = 1e9


class Deadlines:
    """The running deadlines of one event loop's requests, grouped by tick."""

    __slots__ = ("_ticks",)

    def __init__(self) -> None:
        self._ticks: dict[int, set[Deadline]] = {}

    def after(self, seconds: float) -> Deadline:
        """A deadline `seconds` from when it is entered (`with`)."""
        return Deadline(self, seconds)

    def _add(
        self, deadline: Deadline, when: float, loop: asyncio.AbstractEventLoop
    ) -> set[Deadline]:
        tick = math.ceil(when / TICK)
        due = self._ticks.get(tick)
        if due is None:
            due = self._ticks[tick] = set()
            loop.call_at(tick * TICK, self._expire, tick)
        due.add(deadline)
        return due

    def _expire(self, tick: int) -> None:
        for deadline in self._ticks.pop(tick, ()):
            deadline._expire()


class Deadline:
    """One request's deadline: `with deadline:` around the request; past it, `TimeoutError`."""

    __slots__ = ("_cancelling", "_deadlines", "_due", "_expired", "_seconds", "_task")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = min(seconds, LONGEST)
        self._expired = False

    def __enter__(self) -> Deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a request deadline needs a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._due = self._deadlines._add(self, loop.time() + self._seconds, loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._due.discard(self)
        if self._expired:
            cancelled_by_others = self._task.uncancel() > self._cancelling
            if exc_type is asyncio.CancelledError and not cancelled_by_others:
                raise TimeoutError from exc

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()
