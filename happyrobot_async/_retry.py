"""What to retry, how long to wait, and when to stop: one policy, pure functions.

The rules, as a table a reader can check against `tests/test_retry.py`:

| failure                                   | read (GET) | create (POST)                |
|-------------------------------------------|------------|------------------------------|
| connect refused / DNS / connect timeout   | retry      | retry (never sent)           |
| 408, 429, 503 with Retry-After            | retry      | retry after the wait (refused)|
| read timeout, disconnect, truncated body  | retry      | reconcile (ambiguous)        |
| 500, 502, 504, 503 without Retry-After    | retry      | reconcile (ambiguous)        |
| any other status (4xx, 3xx)               | raise      | raise (fatal)                |
| a 2xx body of the wrong shape             | raise      | raise (fatal)                |

A server's wait (`retry-after-ms`, else `Retry-After` in seconds or as an HTTP
date; `_wire` parses it) is obeyed exactly, without jitter, up to
`max_retry_after`; a longer one is raised at once. Otherwise: full-jitter
exponential backoff. `RetryPolicy.decide` turns one failure into a `Decision`;
`_attempts` acts on it, and is the only place that sleeps or spends the budget.
"""

from __future__ import annotations

import enum
import random
from typing import Final

import attrs
import backoff

from . import errors

__all__ = ["RetryPolicy"]

_RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_REFUSED_STATUSES: Final = frozenset({408, 429})


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How hard to try. Defaults: 5 attempts, 0.5 s * 2^n full jitter capped at 20 s."""

    max_retries: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    """Retries after the first attempt: at most `max_retries + 1` requests; 0 disables."""
    initial_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 120.0
    """A server's Retry-After longer than this is raised as an error, not waited out."""
    reconcile_delay: float = 2.0
    """Creates: how long to let a possibly-stored model settle before looking again."""
    clock_skew: float = 10.0
    """Creates: how far the server's clock (and its whole-second timestamps) may be off ours."""

    def backoff_delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max_delay, initial_delay * 2^retry))."""
        ceiling = min(self.max_delay, self.initial_delay * 2**retry)
        if rng is not None:
            return rng.uniform(0, ceiling)
        return float(backoff.full_jitter(ceiling))

    def delay_for(self, exc: BaseException, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `retry` (0-based) after `exc`."""
        server_wait = getattr(exc, "retry_after", None)
        if server_wait is not None:
            return float(server_wait)
        return self.backoff_delay(retry, rng)

    def waits_too_long(self, exc: BaseException) -> bool:
        """True when the server asked for a wait beyond `max_retry_after`."""
        server_wait = getattr(exc, "retry_after", None)
        return server_wait is not None and server_wait > self.max_retry_after

    def decide(
        self, exc: BaseException, attempt: int, *, create: bool, rng: random.Random | None = None
    ) -> Decision:
        """What to do after attempt number `attempt` (1-based) failed with `exc`.

        Reads follow the table's read column; creates its create column: an
        ambiguous create is reconciled first, and resent (at once: the reconcile
        waited) only if retries remain.
        """
        retries_left = attempt <= self.max_retries
        if create:
            failure = classify_create_failure(exc)
            if failure is CreateFailure.FATAL:
                return GIVE_UP
            if failure is CreateFailure.AMBIGUOUS:
                return Decision(retry=retries_left, reconcile=True)
        elif not is_retryable_read(exc):
            return GIVE_UP
        if not retries_left or self.waits_too_long(exc):
            return GIVE_UP
        return Decision(retry=True, delay=self.delay_for(exc, attempt - 1, rng))


@attrs.frozen
class Decision:
    """The policy's answer to one failure: look for a stored create first? send again, when?"""

    retry: bool
    delay: float = 0.0
    reconcile: bool = False


GIVE_UP: Final = Decision(retry=False)


def is_retryable_read(exc: BaseException) -> bool:
    """Whether a failed GET may simply be sent again."""
    if isinstance(exc, errors.APIConnectionError):
        return True
    return isinstance(exc, errors.APIStatusError) and exc.status_code in _RETRYABLE_STATUSES


class CreateFailure(enum.Enum):
    """What a failed POST tells us about whether a model was created."""

    NEVER_SENT = "never sent"
    REFUSED = "refused"
    AMBIGUOUS = "ambiguous"
    FATAL = "fatal"


def classify_create_failure(exc: BaseException) -> CreateFailure:
    """Sort a failed create attempt into the table above."""
    if isinstance(exc, errors.APIConnectionError):
        return CreateFailure.AMBIGUOUS if exc.request_sent else CreateFailure.NEVER_SENT
    if not isinstance(exc, errors.APIStatusError):
        return CreateFailure.FATAL
    if exc.status_code in _REFUSED_STATUSES:
        return CreateFailure.REFUSED
    if exc.status_code == 503:
        return CreateFailure.REFUSED if exc.retry_after is not None else CreateFailure.AMBIGUOUS
    if exc.status_code in _RETRYABLE_STATUSES:
        return CreateFailure.AMBIGUOUS
    return CreateFailure.FATAL


@attrs.define
class RetryBudget:
    """A client-wide retry quota, so a failing server is not hammered.

    Like botocore's retry quota: each retry spends `retry_cost` tokens, each
    success refunds `success_refund` (up to `capacity`). With the bucket empty,
    failures are raised at once instead of retried, until successes refill it.
    With the defaults, about 50 retries in a row without a success empty it.
    A wait the server asked for (Retry-After) costs nothing: obeying it is not
    hammering, and a rate-limited batch must not give up for being patient.
    """

    capacity: int = 500
    retry_cost: int = 10
    success_refund: int = 1
    tokens: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.tokens = self.capacity

    def try_spend(self) -> bool:
        """Take the cost of one retry; False when the budget is spent."""
        if self.tokens < self.retry_cost:
            return False
        self.tokens -= self.retry_cost
        return True

    def permits(self, exc: BaseException) -> bool:
        """May `exc` be retried? Free when the server said when; else spend tokens."""
        if getattr(exc, "retry_after", None) is not None:
            return True
        return self.try_spend()

    def refund(self) -> None:
        """A request succeeded: give back a little."""
        self.tokens = min(self.capacity, self.tokens + self.success_refund)
