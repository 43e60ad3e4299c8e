"""A client-side request rate that backs off on 429 and creeps back up (AIMD).

Pure: time is passed in, so the schedule is tested without sleeping.
"""

from __future__ import annotations

import attrs

__all__: list[str] = []

#: The slowest an engaged limiter ever paces, in requests per second.
FLOOR_RATE = 0.25
#: Without a `rate_limit`, a 429 engages the limiter only at this rate or above (requests in
#: the last second): below it, the per-call Retry-After waits are pacing enough.
ENGAGE_RATE = 10
#: Once engaged, a 429 halves the rate only if 429s are at least this share of the recent
#: responses: a few stray 429s (a shared quota, a hiccup) are not congestion.
THROTTLED_SHARE = 0.1


#: Slots a second is counted in: the count is exact to a tenth of a second.
_TICKS = 10


class LastSecond:
    """How many events of the last second, counted in tenths of a second.

    The tenth the second began in is counted for the part of it still within
    the second (as if its events were spread evenly over it); so events older
    than a second and a tenth never count, however bursty.
    """

    __slots__ = ("_counts", "_tick")

    def __init__(self) -> None:
        self._counts = [0] * (_TICKS + 1)  # by tick modulo _TICKS + 1
        self._tick = 0

    def add(self, now: float) -> None:
        """One event at `now` (seconds, never going back)."""
        tick = int(now * _TICKS)
        if tick > self._tick:
            self._move(tick)
        self._counts[tick % (_TICKS + 1)] += 1

    def count(self, now: float) -> float:
        """Events in the second up to `now`."""
        tick = int(now * _TICKS)
        if tick > self._tick:
            self._move(tick)
        oldest = self._counts[(tick + 1) % (_TICKS + 1)]  # the tick a second ago
        within = 1.0 - (now * _TICKS - tick)
        return sum(self._counts) - oldest * (1.0 - within)

    def _move(self, tick: int) -> None:
        """Start tick `tick`: the ticks since the last one (or all) count nothing yet."""
        if tick - self._tick > _TICKS:
            self._counts = [0] * (_TICKS + 1)
        else:
            for passed in range(self._tick + 1, tick + 1):
                self._counts[passed % (_TICKS + 1)] = 0
        self._tick = tick


@attrs.define
class AdaptiveRateLimiter:
    """A GCRA rate limit shared by every call of a client.

    With `max_rate` (the client's `rate_limit`) it paces from the start. Without
    one it only counts the requests of the last second, until a 429 comes while
    that count is at least `ENGAGE_RATE`: then it engages at half that rate, with
    twice that rate as its ceiling. Then a 429 halves the rate (at most once per
    `cooldown` seconds, so a burst of 429s from one overload counts once) when
    429s are at least `THROTTLED_SHARE` of the responses of the last one or two
    `cooldown` windows;
    stray ones (3 % of requests, say) leave it alone. Successes win it back
    slowly: each adds `max_rate / 100 / rate`, about `max_rate / 100` requests/s
    per second, so a halved rate takes ~50 s to recover, as TCP's additive
    increase does.
    """

    max_rate: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    burst: int = 1
    cooldown: float = 1.0
    rate: float | None = attrs.field(init=False)
    """Requests per second now; None while not engaged."""
    _theoretical_arrival: float = attrs.field(init=False, default=0.0)
    _last_decrease: float = attrs.field(init=False, default=float("-inf"))
    _sent: LastSecond = attrs.field(init=False, factory=LastSecond)
    """Requests sent in the last second (counted only while not engaged)."""
    _responses: int = attrs.field(init=False, default=0)
    """Responses of the current `cooldown`-long window, and how many of them were 429s."""
    _throttled: int = attrs.field(init=False, default=0)
    _window: float = attrs.field(init=False, default=float("-inf"))
    _earlier: tuple[int, int] = attrs.field(init=False, default=(0, 0))
    """The window before: (responses, 429s), so a window just begun is not judged alone."""

    def __attrs_post_init__(self) -> None:
        self.rate = self.max_rate

    @property
    def min_rate(self) -> float:
        """The floor the rate never drops below."""
        return max(FLOOR_RATE, (self.max_rate or 0.0) / 32)

    def reserve(self, now: float) -> float:
        """Book the next slot; return how long to wait before sending (0 if none)."""
        rate = self.rate
        if rate is None:
            self._sent.add(now)
            return 0.0
        interval = 1.0 / rate
        arrival = max(self._theoretical_arrival, now)
        wait = max(0.0, arrival - (self.burst - 1) * interval - now)
        self._theoretical_arrival = arrival + interval
        return wait

    def release(self) -> None:
        """A request that booked a slot was cancelled before it went: give the slot back."""
        if self.rate is not None:
            self._theoretical_arrival -= 1.0 / self.rate

    def on_throttled(self, now: float) -> None:
        """The server said 429: engage, or halve the rate, once per cooldown."""
        self._count_response(now)
        self._throttled += 1
        if now - self._last_decrease < self.cooldown:
            return
        if self.rate is None:
            measured = self._sent.count(now)
            if measured < ENGAGE_RATE:
                return
            self.max_rate = 2.0 * measured
            self.rate = max(self.min_rate, measured / 2)
            self._theoretical_arrival = now
            # shares count from here: successes before engaging were not counted
            self._window, self._responses, self._throttled, self._earlier = now, 1, 1, (0, 0)
        elif self._throttled + self._earlier[1] >= THROTTLED_SHARE * (
            self._responses + self._earlier[0]
        ):
            self.rate = max(self.min_rate, self.rate / 2)
        else:
            return
        self._last_decrease = now

    def on_success(self, now: float) -> None:
        """A request went through: raise the rate a little, up to `max_rate`.

        Not engaged, there is nothing to learn from it (every request is on its way).
        """
        rate, ceiling = self.rate, self.max_rate
        if rate is None:
            return
        self._count_response(now)
        if ceiling is not None and rate < ceiling:
            self.rate = min(ceiling, rate + ceiling / 100 / rate)

    def _count_response(self, now: float) -> None:
        if now - self._window >= self.cooldown:
            recent = now - self._window < 2 * self.cooldown
            self._earlier = (self._responses, self._throttled) if recent else (0, 0)
            self._window, self._responses, self._throttled = now, 0, 0
        self._responses += 1
