"""The retry rules as a table, checked with no network."""

from __future__ import annotations

import random
from typing import Any

import pytest

import happyrobot_async as hr
from happyrobot_async import _wire
from happyrobot_async._attempts import Attempts
from happyrobot_async._ratelimit import AdaptiveRateLimiter
from happyrobot_async._response import Response
from happyrobot_async._retry import (
    GIVE_UP,
    CreateFailure,
    Decision,
    RetryBudget,
    RetryPolicy,
    classify_create_failure,
    is_retryable_read,
)

REQUEST = _wire.list_request()


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
    (hr.ResponseValidationError("bad", status_code=200), False, CreateFailure.AMBIGUOUS),
    (hr.ResponseValidationError("bad", status_code=404), False, CreateFailure.FATAL),
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


def test_server_wait_is_obeyed_and_spread() -> None:
    """A Retry-After is waited, stretched by 0-50 % at random; past the cap it is not waited."""
    policy = RetryPolicy(max_retry_after=120)
    rng = random.Random(3)
    delays = [policy.delay_for(status_error(429, 4.0), retry=0, rng=rng) for _ in range(500)]
    assert all(4.0 <= d <= 6.0 for d in delays)
    assert max(delays) - min(delays) > 1.5  # spread out, not in lockstep
    assert not policy.waits_too_long(status_error(429, 120))
    assert policy.waits_too_long(status_error(429, 121))
    assert not policy.waits_too_long(status_error(500))


SEED_1_FIRST = random.Random(1).random()


def refused(server_wait: float, refusals: int) -> Decision:
    """What the policy answers a refusal: the spread wait, floored by the backoff."""
    rng = random.Random(1)
    spread = rng.uniform(0, 0.5)
    backoff = rng.uniform(0, min(20.0, 0.5 * 2**refusals))
    return Decision(retry=True, delay=max(server_wait * (1 + spread), backoff), refused=True)


@pytest.mark.parametrize(
    ("exc", "retries", "refusals", "elapsed", "create", "decision"),
    [
        # a read: retried after the backoff, until the counted retries run out
        (status_error(500), 0, 0, 0, False, Decision(retry=True, delay=0.5 * SEED_1_FIRST)),
        (status_error(500), 4, 0, 0, False, GIVE_UP),
        (status_error(404), 0, 0, 0, False, GIVE_UP),
        # a refusal: the server's wait, spread; free of max_retries, bounded by time
        (status_error(429, 2.0), 4, 9, 0, False, refused(2.0, 9)),
        (status_error(503, 0.0), 0, 3, 0, False, refused(0.0, 3)),
        (status_error(429, 2.0), 0, 0, 599.0, False, GIVE_UP),
        (status_error(429, 121.0), 0, 0, 0, False, GIVE_UP),
        (
            status_error(408),
            0,
            0,
            0,
            True,
            Decision(retry=True, delay=0.5 * SEED_1_FIRST, refused=True),
        ),
        # a create: ambiguous → reconcile first, resend only while retries remain
        (status_error(500), 0, 0, 0, True, Decision(retry=True, reconcile=True)),
        (status_error(500), 4, 0, 0, True, Decision(retry=False, reconcile=True)),
        (READ_TIMEOUT, 1, 0, 0, True, Decision(retry=True, reconcile=True)),
        (NOT_SENT, 0, 0, 0, True, Decision(retry=True, delay=0.5 * SEED_1_FIRST)),
        (NOT_SENT, 4, 0, 0, True, GIVE_UP),
        (status_error(429, 3.0), 4, 50, 10, True, refused(3.0, 50)),
        (status_error(400), 0, 0, 0, True, GIVE_UP),
    ],
)
def test_decide_table(
    exc: hr.HappyRobotError,
    retries: int,
    refusals: int,
    elapsed: float,
    create: bool,
    decision: Decision,
) -> None:
    """The policy answers each failure with reconcile / retry after d / give up, as tabled."""
    policy = RetryPolicy(max_retries=4, max_refused_wait=600)
    answer = policy.decide(
        exc,
        retries=retries,
        refusals=refusals,
        elapsed=elapsed,
        create=create,
        rng=random.Random(1),
    )
    assert answer == decision


class Scripted:
    """A `send` that raises or answers the next outcome, recording each attempt's number."""

    def __init__(self, outcomes: list[BaseException | str], calls: list[int]) -> None:
        self.outcomes, self.calls = outcomes, calls

    async def send(self, request: _wire.Request, number: int) -> Response:
        self.calls.append(number)
        outcome = self.outcomes[number - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return Response(200, {}, outcome.encode())


def text(status: int, headers: object, body: bytes, request: _wire.Request) -> str:
    """Decode a scripted answer."""
    return body.decode()


def attempt_from(outcomes: list[BaseException | str], calls: list[int]) -> dict[str, Any]:
    """`Attempts.run` arguments for a scripted sequence of outcomes."""
    return {"request": REQUEST, "decode": text, "send": Scripted(outcomes, calls).send}


class Recorder:
    """An injected sleep that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_attempt_loop_waits_the_servers_time_and_refunds() -> None:
    """Two refusals with Retry-After are waited out (no real sleep), then the value returns."""
    sleep, calls = Recorder(), []
    budget = RetryBudget()
    attempts = Attempts(RetryPolicy(max_retries=0), budget, sleep)
    outcomes: list[BaseException | str] = [status_error(429, 2.0), status_error(503, 1.0), "ok"]
    assert await attempts.run(**attempt_from(outcomes, calls)) == "ok"
    assert calls == [1, 2, 3]  # refusals do not use up max_retries=0
    assert 2.0 <= sleep.delays[0] <= 3.0 and 1.0 <= sleep.delays[1] <= 1.5
    assert budget.failure_ratio == 0.0  # refusals are not failures; the success counts


async def test_attempt_loop_stops_when_the_budget_is_spent() -> None:
    """While failures dominate the budget's window, a failure is raised without a retry."""
    sleep, calls = Recorder(), []
    budget = RetryBudget(window=4, min_outcomes=2, max_failure_ratio=0.5)
    budget.record(True)
    attempts = Attempts(RetryPolicy(), budget, sleep)
    outcomes: list[BaseException | str] = [status_error(500), status_error(502), "ok"]
    with pytest.raises(hr.APIStatusError) as info:
        await attempts.run(**attempt_from(outcomes, calls))
    # 1 success + 1 failure: 50 %, a retry; + a second failure: 67 %, no more
    assert info.value.status_code == 502 and calls == [1, 2] and len(sleep.delays) == 1


class FakeReconcile:
    """Finds nothing (or the given value) and names an unsettled create."""

    def __init__(self, found: str | None) -> None:
        self.found = found
        self.looks = 0

    async def find(self, error: hr.HappyRobotError) -> str | None:
        self.looks += 1
        return self.found

    def unsettled(self, error: hr.HappyRobotError, attempts: int) -> hr.HappyRobotError:
        return hr.HappyRobotError(f"unsettled after {attempts}")

    def describe(self) -> tuple[str, dict[str, object]]:
        return "create 'x'", {"method": "POST", "path": "/models"}


async def test_attempt_loop_reconciles_an_ambiguous_create() -> None:
    """An ambiguous failure is looked up first; what it stored is returned, nothing resent."""
    sleep, calls, reconcile = Recorder(), [], FakeReconcile("adopted")
    attempts = Attempts(RetryPolicy(), RetryBudget(), sleep)
    outcomes: list[BaseException | str] = [status_error(500), "second"]
    result = await attempts.run(**attempt_from(outcomes, calls), reconcile=reconcile)
    assert result == "adopted" and calls == [1] and reconcile.looks == 1 and sleep.delays == []


async def test_attempt_loop_resends_then_gives_up_unsettled() -> None:
    """Found nothing: resend at once while retries remain, then raise the unsettled error."""
    sleep, calls, reconcile = Recorder(), [], FakeReconcile(None)
    attempts = Attempts(RetryPolicy(max_retries=2), RetryBudget(), sleep)
    outcomes: list[BaseException | str] = [READ_TIMEOUT, DROPPED, status_error(504)]
    with pytest.raises(hr.HappyRobotError, match="unsettled after 3"):
        await attempts.run(**attempt_from(outcomes, calls), reconcile=reconcile)
    assert calls == [1, 2, 3] and reconcile.looks == 3 and sleep.delays == []


def test_max_retries_must_not_be_negative() -> None:
    """A negative retry count is refused."""
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def test_retry_budget_closes_on_a_dead_server_and_reopens() -> None:
    """All failures: retries stop after `min_outcomes`; successes open the budget again."""
    budget = RetryBudget(window=100, max_failure_ratio=0.5, min_outcomes=20)
    for _ in range(19):
        budget.record(False)
    assert budget.permits(status_error(500))
    budget.record(False)
    assert not budget.permits(status_error(500))
    assert budget.permits(status_error(429, 1.0))  # a scheduled wait is always allowed
    for _ in range(21):
        budget.record(True)
    assert budget.permits(status_error(500))


def test_retry_budget_never_closes_at_a_steady_fault_rate() -> None:
    """One failure in five, for ever: the budget permits every retry."""
    budget = RetryBudget()
    for n in range(10_000):
        budget.record(n % 5 != 0)
        assert budget.permits(status_error(500))
    assert budget.failure_ratio == pytest.approx(0.2)


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
        limiter.on_success(now=7.0)
    assert 2.5 < limiter.rate < 10.0
    for _ in range(10_000):
        limiter.on_success(now=7.0)
    assert limiter.rate == 10.0
    for t in range(20):
        limiter.on_throttled(now=10.0 + t)
    assert limiter.rate == pytest.approx(10.0 / 32)


def test_rate_limiter_engages_on_the_first_429_without_a_limit() -> None:
    """No rate_limit set: no pacing, until a 429; then half the rate measured, creeping up."""
    slow = AdaptiveRateLimiter()
    assert [slow.reserve(now=100.0 + n / 5) for n in range(20)] == [0.0] * 20  # 5/s
    slow.on_throttled(now=104.0)
    assert slow.rate is None  # too slow to be the cause: per-call waits pace it
    limiter = AdaptiveRateLimiter()
    assert [limiter.reserve(now=100.0 + n / 40) for n in range(80)] == [0.0] * 80  # 40/s
    limiter.on_throttled(now=102.0)
    assert limiter.rate == pytest.approx(20.0, rel=0.05)
    waits = [limiter.reserve(now=102.0) for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.05, 0.1], rel=0.05)
    for _ in range(10_000):
        limiter.on_success(now=7.0)
    assert limiter.rate == limiter.max_rate


def test_stray_429s_do_not_collapse_the_rate() -> None:
    """One 429 in thirty, for minutes: the engaged limiter keeps its rate; a storm halves it."""
    limiter = AdaptiveRateLimiter(100.0)
    for n in range(60_000):
        now = n / 200
        if n % 30 == 0:
            limiter.on_throttled(now)
        else:
            limiter.on_success(now)
    assert limiter.rate == 100.0
    for n in range(100):  # then every response is a 429 for half a second
        limiter.on_throttled(300.0 + n / 200)
    assert limiter.rate == 50.0
