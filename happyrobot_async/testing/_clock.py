"""The simulated clock that drives the model lifecycle."""

from __future__ import annotations

import time

import attrs


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
