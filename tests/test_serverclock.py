"""The server's clock, estimated from Date headers with no network: bounds that narrow."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from happyrobot_async._serverclock import ServerClock

T0 = 1_700_000_000.0  # our epoch seconds


def date_at(epoch: float) -> str:
    """The Date header a server whose clock reads `epoch` sends."""
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


def test_unknown_until_a_date_is_seen() -> None:
    """No response yet: no offset, infinite uncertainty."""
    clock = ServerClock()
    assert clock.offset is None and clock.uncertainty == float("inf")
    assert clock.lowest is None


@pytest.mark.parametrize("offset", [-3600.0, -120.0, -15.0, 0.0, 2.5, 3600.0])
def test_many_responses_pin_the_offset_down(offset: float) -> None:
    """Responses every 50 ms with a 10 ms round trip: the estimate is within 0.1 s."""
    clock = ServerClock()
    for n in range(100):
        sent = T0 + n * 0.05
        clock.observe_date(date_at(sent + 0.005 + offset), sent, sent + 0.01)
    assert clock.offset == pytest.approx(offset, abs=0.1)
    assert clock.uncertainty < 0.1
    assert clock.offset is not None and clock.lowest is not None
    assert clock.lowest == pytest.approx(clock.offset - clock.uncertainty)


def test_a_clock_that_jumps_starts_the_estimate_again() -> None:
    """A Date that contradicts the bounds (the server's clock was set) is believed."""
    clock = ServerClock()
    for n in range(40):
        sent = T0 + n * 0.05
        clock.observe_date(date_at(sent), sent, sent + 0.01)
    sent = T0 + 10
    clock.observe_date(date_at(sent + 300), sent, sent + 0.01)
    assert clock.offset == pytest.approx(300, abs=0.6)


def test_a_bad_date_is_ignored() -> None:
    """A Date header that is not a date changes nothing."""
    clock = ServerClock()
    clock.observe_date("yesterday", T0, T0 + 0.01)
    assert clock.offset is None
