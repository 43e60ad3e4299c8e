"""The server's clock, as far as its responses tell: our clock plus an estimated offset.

Pure: times are passed in. Every response's `Date` header (whole seconds) says
the server's time was in `[D, D + 1)` at some instant between sending and
receiving, which bounds the offset `server - ours`; so does the `created_at` of
a model we just created. Bounds from many responses narrow the estimate to
about the round trip. A bound that contradicts the others (someone set a clock)
starts the estimate afresh.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

__all__: list[str] = []


class ServerClock:
    """The offset to add to our UTC epoch seconds to get the server's, once known."""

    __slots__ = ("_high", "_last_date", "_last_epoch", "_latest_sent", "_low")

    def __init__(self) -> None:
        self._low = float("-inf")
        self._high = float("inf")
        self._last_date: str | None = None
        self._last_epoch = 0.0
        self._latest_sent = float("-inf")

    @property
    def offset(self) -> float | None:
        """Seconds the server's clock is ahead of ours (negative: behind); None until seen."""
        high = self._upper()
        if high == float("inf"):
            return None
        return (self._low + high) / 2

    @property
    def lowest(self) -> float | None:
        """The least the offset can be (`offset - uncertainty`); None until seen."""
        if self._last_date is None and self._high == float("inf"):
            return None
        return self._low

    @property
    def uncertainty(self) -> float:
        """How far the true offset may be from `offset` (infinite until seen)."""
        return (self._upper() - self._low) / 2

    def observe_date(self, date: str, sent: float, received: float) -> None:
        """A response sent at `sent` and received at `received` (our epoch) had `Date: date`.

        Of the responses with one `Date`, the first bounds the offset from below and
        the last from above; the ones between tell nothing more. So the common case,
        the same `Date` as before, only remembers when it was sent.
        """
        if date == self._last_date:
            self._latest_sent = sent
            return
        try:
            epoch = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        self._high = self._upper()
        self._last_date, self._last_epoch, self._latest_sent = date, epoch, sent
        self.observe(epoch, 1.0, sent, received)

    def observe(self, server_time: float, resolution: float, sent: float, received: float) -> None:
        """The server's time was in `[server_time, server_time + resolution)` at some instant
        between `sent` and `received` (our epoch seconds)."""
        low = server_time - received
        high = server_time + resolution - sent
        if low > self._high or high < self._low:  # contradicts what we knew: start again
            self._low, self._high = low, high
        else:
            self._low, self._high = max(self._low, low), min(self._high, high)

    def _upper(self) -> float:
        if self._last_date is None:
            return self._high
        return min(self._high, self._last_epoch + 1.0 - self._latest_sent)
