"""The simulator's two clocks: simulated time for the lifecycle, and the server's wall clock."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

import attrs

#: How the server spells `created_at`: `Z` (the default), lowercase `z`, a `+00:00`
#: offset, or `fraction` (microseconds and `Z`).
TimestampFormat = Literal["Z", "z", "+00:00", "fraction"]
TIMESTAMP_FORMATS: tuple[str, ...] = ("Z", "z", "+00:00", "fraction")


@attrs.define
class SimClock:
    """Simulated seconds since start: real time times `speed`, plus manual `advance()` steps.

    Lifecycle status is computed from this clock at read time, so speeding it up
    (or stepping it) moves every model forward at once without any background task.
    """

    _speed: float = attrs.field(default=1.0, alias="speed")
    _base: float = attrs.field(init=False, default=0.0)
    _anchor: float = attrs.field(init=False, factory=time.monotonic)

    def __attrs_post_init__(self) -> None:
        _check_speed(self._speed)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        _check_speed(value)
        self._rebase()
        self._speed = value

    def now(self) -> float:
        """Return the current simulated time in seconds (starts at 0)."""
        return self._base + (time.monotonic() - self._anchor) * self._speed

    def advance(self, seconds: float) -> None:
        """Step simulated time forward by `seconds`, instantly."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._base += seconds

    def _rebase(self) -> None:
        anchor = time.monotonic()
        self._base += (anchor - self._anchor) * self._speed
        self._anchor = anchor


def _check_speed(value: float) -> None:
    if value < 0:
        raise ValueError(f"speed must be >= 0, got {value!r}")


def _check_offset(_: object, __: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"clock_offset must be a finite number of seconds, got {value!r}")


def _check_format(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in TIMESTAMP_FORMATS:
        raise ValueError(f"timestamp_format must be one of {TIMESTAMP_FORMATS}")


@attrs.define
class WallClock:
    """The server's wall clock: real UTC time plus `offset` seconds (negative: behind).

    It stamps `created_at` (spelled as `timestamp_format` says) and the HTTP `Date`
    header; the lifecycle's `SimClock` is unrelated.
    """

    offset: float = attrs.field(default=0.0, converter=float, validator=_check_offset)
    timestamp_format: TimestampFormat = attrs.field(default="Z", validator=_check_format)

    def now(self) -> float:
        """Return the server's time as a POSIX timestamp."""
        return time.time() + self.offset

    def created_at(self) -> str:
        """Return the server's time as the API writes `created_at`."""
        now = self.now()
        spelling = self.timestamp_format
        if spelling == "Z":
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        if spelling == "fraction":
            return f"{seconds}.{int(now % 1 * 1_000_000):06d}Z"
        return seconds + spelling

    def http_date(self) -> str:
        """Return the server's time as an HTTP `Date` header (RFC 7231)."""
        return format_datetime(datetime.fromtimestamp(self.now(), UTC), usegmt=True)
