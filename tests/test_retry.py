"""The retry rules as a table, checked with no network."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

import happyrobot_async as hr
from happyrobot_async._ratelimit import AdaptiveRateLimiter
from happyrobot_async._retry import (
    CreateFailure,
    RetryBudget,
    RetryPolicy,
    classify_create_failure,
    is_retryable_read,
    retry_after_seconds,
)


def status_error(code: int, retry_after: float | None = None) -> hr.APIStatusError:
    return hr.APIStatusError("x", status_code=code, retry_after=retry_after)


NOT_SENT = hr.APIConnectionError("refused", request_sent=False)
CONNECT_TIMEOUT = hr.APITimeoutError("connect", request_sent=False)
READ_TIMEOUT = hr.APITimeoutError("read")
DROPPED = hr.APIConnectionError("lost")

TABLE = [
    # failure,                       read retried, create class
    (NOT_SENT, True, CreateFailure.NEVER_SENT),
    (CONNECT_TIMEOUT, True, CreateFailure.NEVER_SENT),
    (READ_TIMEOUT, True, CreateFailure.AMBIGUOUS),
    (DROPPED, True, CreateFailure.AMBIGUOUS),
    (status_error(408), True, CreateFailure.REFUSED),
    (status_error(429, 1.0), True, CreateFailure.REFUSED),
    (status_error(503, 2.0), True, CreateFailure.REFUSED),
    (status_error(503), True, CreateFailure.AMBIGUOUS),
    (status_error(500), True, CreateFailure.AMBIGUOUS),
    (status_error(502), True, CreateFailure.AMBIGUOUS),
    (status_error(504), True, CreateFailure.AMBIGUOUS),
    (status_error(400), False, CreateFailure.FATAL),
    (status_error(401), False, CreateFailure.FATAL),
    (status_error(404), False, CreateFailure.FATAL),
    (status_error(422), False, CreateFailure.FATAL),
    (status_error(307), False, CreateFailure.FATAL),
    (hr.ResponseValidationError("bad", status_code=200), False, CreateFailure.FATAL),
]


@pytest.mark.parametrize(("exc", "read_retried", "create_class"), TABLE)
def test_retry_table(
    exc: hr.HappyRobotError, read_retried: bool, create_class: CreateFailure
) -> None:
    """Each failure is retried (reads) and classified (creates) as the module's table says."""
    assert is_retryable_read(exc) is read_retried
    assert classify_create_failure(exc) is create_class


def test_backoff_is_full_jitter_and_capped() -> None:
    """Delays are uniform in [0, 0.5 * 2^n), never above the 20 s cap."""
    policy = RetryPolicy()
    rng = random.Random(1)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 20.0)]:
        delays = [policy.backoff_delay(retry, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8


def test_server_wait_is_obeyed_without_jitter() -> None:
    """A Retry-After is the delay, exactly; past the cap it is not waited out."""
    policy = RetryPolicy(max_retry_after=120)
    assert policy.delay_for(status_error(429, 3.5), retry=4) == 3.5
    assert not policy.waits_too_long(status_error(429, 120))
    assert policy.waits_too_long(status_error(429, 121))
    assert not policy.waits_too_long(status_error(500))


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Mon, 01 Jan 2024 00:00:30 GMT"}, 30.0),
        ({"retry-after": "Sun, 31 Dec 2023 23:00:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "x", "retry-after": "2"}, 2.0),
    ],
)
def test_retry_after_header_forms(headers: dict[str, str], seconds: float | None) -> None:
    """retry-after-ms wins; Retry-After may be seconds or an HTTP date; junk is ignored."""
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(headers, now) == seconds


def test_max_retries_must_not_be_negative() -> None:
    """A negative retry count is refused."""
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def test_retry_budget_runs_dry_and_refills() -> None:
    """Many retries without success empty the budget; successes fill it again."""
    budget = RetryBudget(capacity=30, retry_cost=10, success_refund=5)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    budget.refund()
    budget.refund()
    assert budget.try_spend()
    for _ in range(100):
        budget.refund()
    assert budget.tokens == 30


def test_retry_budget_does_not_charge_for_server_waits() -> None:
    """A retry the server scheduled (Retry-After) is always permitted and costs nothing."""
    budget = RetryBudget(capacity=10, retry_cost=10)
    assert budget.permits(status_error(500))
    assert not budget.permits(status_error(500))
    assert budget.permits(status_error(429, 1.0))
    assert budget.tokens == 0


def test_rate_limiter_paces_requests() -> None:
    """At 10 req/s the n-th request of a burst waits n/10 s."""
    limiter = AdaptiveRateLimiter(10.0)
    waits = [limiter.reserve(now=100.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_rate_limiter_halves_on_429_once_per_cooldown_then_recovers() -> None:
    """A burst of 429s halves the rate once; successes climb back to the maximum."""
    limiter = AdaptiveRateLimiter(10.0, cooldown=1.0)
    limiter.on_throttled(now=5.0)
    limiter.on_throttled(now=5.5)
    assert limiter.rate == 5.0
    limiter.on_throttled(now=6.0)
    assert limiter.rate == 2.5
    for _ in range(100):
        limiter.on_success()
    assert 2.5 < limiter.rate < 10.0
    for _ in range(10_000):
        limiter.on_success()
    assert limiter.rate == 10.0
    for t in range(20):
        limiter.on_throttled(now=10.0 + t)
    assert limiter.rate == pytest.approx(10.0 / 32)
