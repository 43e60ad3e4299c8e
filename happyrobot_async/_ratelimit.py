"""A client-side request rate that backs off on 429 and creeps back up (AIMD).

Pure: time is passed in, so the schedule is tested without sleeping.
"""

from __future__ import annotations

import attrs

__all__: list[str] = []


@attrs.define
class AdaptiveRateLimiter:
    """A GCRA rate limit at `rate` requests/s, shared by every call of a client.

    A 429 halves the rate (at most once per `cooldown` seconds, so a burst of
    429s from one overload counts once). Successes win it back slowly: each
    adds `max_rate / 100 / rate`, about `max_rate / 100` requests/s per second,
    so a halved rate takes ~50 s to recover, as TCP's additive increase does.
    """

    max_rate: float = attrs.field(validator=attrs.validators.gt(0))
    burst: int = 1
    cooldown: float = 1.0
    rate: float = attrs.field(init=False)
    _theoretical_arrival: float = attrs.field(init=False, default=0.0)
    _last_decrease: float = attrs.field(init=False, default=float("-inf"))

    def __attrs_post_init__(self) -> None:
        self.rate = self.max_rate

    @property
    def min_rate(self) -> float:
        """The floor the rate never drops below."""
        return self.max_rate / 32

    def reserve(self, now: float) -> float:
        """Book the next slot; return how long to wait before sending (0 if none)."""
        interval = 1.0 / self.rate
        arrival = max(self._theoretical_arrival, now)
        wait = max(0.0, arrival - (self.burst - 1) * interval - now)
        self._theoretical_arrival = arrival + interval
        return wait

    def on_throttled(self, now: float) -> None:
        """The server said 429: halve the rate, once per cooldown."""
        if now - self._last_decrease >= self.cooldown:
            self.rate = max(self.min_rate, self.rate / 2)
            self._last_decrease = now

    def on_success(self) -> None:
        """A request went through: raise the rate a little, up to `max_rate`."""
        self.rate = min(self.max_rate, self.rate + self.max_rate / 100 / self.rate)
