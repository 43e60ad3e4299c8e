"""Whole-request timeouts for thousands of requests a second, on a few shared timers.

aiohttp's own `ClientTimeout(total=...)` arms a timer for every request and
enters a timeout context at every read: about 7 µs a request, 7 % of a get.
Here the requests whose deadlines fall in the same tick (`TICK` seconds) share
one timer, and starting or ending a deadline is a set insertion or removal; the
last request of a tick to end cancels its timer. A deadline fires at most one
tick late.

Expiry works as in `asyncio.timeout`: the request's task is cancelled, and the
cancellation becomes `TimeoutError` where the deadline ends, unless the task
was also cancelled by someone else (then the cancellation goes on). `end_all()`
(the client closing) stops every request in the same way, as `EndedByClose`.
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


class EndedByClose(Exception):
    """A request stopped by `Deadlines.end_all()`: its client was closed."""


class Deadlines:
    """The running deadlines of one event loop's requests, grouped by tick."""

    __slots__ = ("_ticks",)

    def __init__(self) -> None:
        self._ticks: dict[int, _Tick] = {}

    def after(self, seconds: float) -> Deadline:
        """A deadline `seconds` from when it is entered (`with`)."""
        return Deadline(self, seconds)

    def end_all(self) -> None:
        """Stop every request inside a deadline now: each raises `EndedByClose`."""
        ticks, self._ticks = self._ticks, {}
        for tick in ticks.values():
            tick.timer.cancel()
            for deadline in tick.due:
                deadline._expire(EndedByClose)

    def _add(self, deadline: Deadline, when: float, loop: asyncio.AbstractEventLoop) -> _Tick:
        number = math.ceil(when / TICK)
        tick = self._ticks.get(number)
        if tick is None:
            tick = self._ticks[number] = _Tick(self, number, loop)
        tick.due.add(deadline)
        return tick


class _Tick:
    """The deadlines due at one tick, and the timer that expires them."""

    __slots__ = ("_deadlines", "_number", "due", "timer")

    def __init__(self, deadlines: Deadlines, number: int, loop: asyncio.AbstractEventLoop) -> None:
        self._deadlines, self._number = deadlines, number
        self.due: set[Deadline] = set()
        self.timer = loop.call_at(number * TICK, self._expire)

    def leave(self, deadline: Deadline) -> None:
        """`deadline` ended in time; the last one out cancels the timer."""
        due = self.due
        due.discard(deadline)
        if not due:
            self.timer.cancel()
            self._forget()

    def _expire(self) -> None:
        self._forget()
        for deadline in self.due:
            deadline._expire(TimeoutError)

    def _forget(self) -> None:
        """No new deadline joins this tick (unless `end_all()` already dropped them all)."""
        ticks = self._deadlines._ticks
        if ticks.get(self._number) is self:
            del ticks[self._number]


class Deadline:
    """One request's deadline: `with deadline:` around the request; past it, `TimeoutError`."""

    __slots__ = ("_cancelling", "_deadlines", "_ended_by", "_seconds", "_task", "_tick")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = min(seconds, LONGEST)
        self._ended_by: type[Exception] | None = None

    def __enter__(self) -> Deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a request deadline needs a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._tick = self._deadlines._add(self, loop.time() + self._seconds, loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        ended_by = self._ended_by
        if ended_by is None:
            self._tick.leave(self)
            return
        cancelled_by_others = self._task.uncancel() > self._cancelling
        if exc_type is asyncio.CancelledError and not cancelled_by_others:
            raise ended_by from exc

    def _expire(self, error: type[Exception]) -> None:
        if self._ended_by is None:
            self._ended_by = error
            self._task.cancel()
