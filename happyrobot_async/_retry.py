"""What to retry, how long to wait, and when to stop: one policy, pure functions.

The rules, as a table a reader can check against `tests/test_retry.py`:

| failure                                   | read (GET)    | create (POST)                   |
|-------------------------------------------|---------------|---------------------------------|
| connect refused / DNS / connect timeout   | retry         | retry (never sent)              |
| 408, 429, 503 with Retry-After            | wait, retry   | wait, retry (refused)           |
| read timeout, disconnect, truncated body  | retry         | reconcile (ambiguous)           |
| 500, 502, 504, 503 without Retry-After    | retry         | reconcile (ambiguous)           |
| a 2xx body that cannot be read            | raise         | reconcile (ambiguous)           |
| any other status (4xx, 3xx)               | raise         | raise (fatal)                   |

*Refusals* (408, 429, 503 with Retry-After) stored nothing, so waiting and
sending again is always safe: they do not count against `max_retries`, and are
bounded by time instead (`max_refused_wait` since the call began). Their wait
is the server's (`Retry-After`, parsed by `_wire`) stretched by a random 0-50 %,
so many clients told the same wait do not all come back at the same instant,
and never shorter than the backoff (so `Retry-After: 0` is no storm); without a
`Retry-After`, full-jitter backoff. A `Retry-After` beyond
`max_retry_after` is raised at once. Every other retry counts against
`max_retries` and waits full-jitter exponential backoff.

`RetryPolicy.decide` turns one failure into a `Decision`; `_attempts` acts on
it, and is the only place that sleeps or consults the `RetryBudget`.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from typing import Final

import attrs
import backoff

from . import errors

__all__ = ["RetryPolicy"]

_RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_REFUSED_STATUSES: Final = frozenset({408, 429})
#: A server's wait is stretched by up to this fraction, at random, to spread clients out.
SERVER_WAIT_SPREAD: Final = 0.5


def _count(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.InvalidRequestError(
            attribute.name, f"must be a whole number >= 0, not {value!r}"
        )


def _seconds(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 <= value < float("inf")
    ):
        raise errors.InvalidRequestError(
            attribute.name, f"must be a finite number of seconds >= 0, not {value!r}"
        )


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How hard to try. Defaults: 5 attempts, 0.5 s * 2^n full jitter capped at 20 s."""

    max_retries: int = attrs.field(default=4, validator=_count)
    """Retries after failures (refusals aside): at most `max_retries + 1` such requests."""
    initial_delay: float = attrs.field(default=0.5, validator=_seconds)
    max_delay: float = attrs.field(default=20.0, validator=_seconds)
    max_retry_after: float = attrs.field(default=120.0, validator=_seconds)
    """A server's Retry-After longer than this is raised as an error, not waited out."""
    max_refused_wait: float = attrs.field(default=600.0, validator=_seconds)
    """How long a call keeps waiting out refusals (429, 503 + Retry-After, 408) in all."""
    reconcile_delay: float = attrs.field(default=2.0, validator=_seconds)
    """Creates: how long to let a possibly-stored model settle before looking again."""
    clock_skew: float = attrs.field(default=10.0, validator=_seconds)
    """Creates: how far the server's clock may be off ours while no `Date` header told us."""
    reconcile_tolerance: float = attrs.field(default=1.0, validator=_seconds)
    """Creates: slack, in server time, for a server clock the `Date` headers misjudge."""

    def backoff_delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max_delay, initial_delay * 2^retry))."""
        ceiling = min(self.max_delay, self.initial_delay * 2**retry)
        if rng is not None:
            return rng.uniform(0, ceiling)
        return float(backoff.full_jitter(ceiling))

    def delay_for(self, exc: BaseException, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `retry` (0-based) after `exc`: the server's, spread,
        but never less than the backoff (a `Retry-After: 0` must not become a storm)."""
        server_wait = getattr(exc, "retry_after", None)
        if server_wait is None:
            return self.backoff_delay(retry, rng)
        spread = (rng or random).uniform(0, SERVER_WAIT_SPREAD)
        return max(float(server_wait) * (1 + spread), self.backoff_delay(retry, rng))

    def waits_too_long(self, exc: BaseException) -> bool:
        """True when the server asked for a wait beyond `max_retry_after`."""
        server_wait = getattr(exc, "retry_after", None)
        return server_wait is not None and server_wait > self.max_retry_after

    def decide(
        self,
        exc: BaseException,
        *,
        retries: int,
        refusals: int,
        elapsed: float,
        create: bool,
        rng: random.Random | None = None,
    ) -> Decision:
        """What to do after a failed attempt: `retries` counted retries and `refusals` made
        so far, `elapsed` seconds since the call began.

        Reads follow the table's read column, creates its create column: an
        ambiguous create is reconciled first, and resent at once (the reconcile
        waited) only if retries remain.
        """
        if create:
            failure = classify_create_failure(exc)
            if failure is CreateFailure.FATAL:
                return GIVE_UP
            if failure is CreateFailure.AMBIGUOUS:
                return Decision(retry=retries < self.max_retries, reconcile=True)
        elif not is_retryable_read(exc):
            return GIVE_UP
        if is_refusal(exc):
            if self.waits_too_long(exc):
                return GIVE_UP
            delay = self.delay_for(exc, refusals, rng)
            if elapsed + delay > self.max_refused_wait:
                return GIVE_UP
            return Decision(retry=True, delay=delay, refused=True)
        if retries >= self.max_retries:
            return GIVE_UP
        return Decision(retry=True, delay=self.backoff_delay(retries, rng))


@attrs.frozen
class Decision:
    """The policy's answer to one failure: look for a stored create first? send again, when?"""

    retry: bool
    delay: float = 0.0
    reconcile: bool = False
    refused: bool = False
    """A refusal: it counts against the time bound, not against `max_retries`."""


GIVE_UP: Final = Decision(retry=False)


def is_retryable_read(exc: BaseException) -> bool:
    """Whether a failed GET may simply be sent again."""
    if isinstance(exc, errors.APIConnectionError):
        return True
    return isinstance(exc, errors.APIStatusError) and exc.status_code in _RETRYABLE_STATUSES


def is_refusal(exc: BaseException) -> bool:
    """Whether the server refused the request outright, storing nothing (408, 429, 503 + wait)."""
    if not isinstance(exc, errors.APIStatusError):
        return False
    code = exc.status_code
    return code in _REFUSED_STATUSES or (code == 503 and exc.retry_after is not None)


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
    if isinstance(exc, errors.ResponseValidationError):
        # A success we could not read: the model may well exist.
        ok = 200 <= exc.status_code < 300
        return CreateFailure.AMBIGUOUS if ok else CreateFailure.FATAL
    if not isinstance(exc, errors.APIStatusError):
        return CreateFailure.FATAL
    if is_refusal(exc):
        return CreateFailure.REFUSED
    if exc.status_code in _RETRYABLE_STATUSES:
        return CreateFailure.AMBIGUOUS
    return CreateFailure.FATAL


@attrs.define
class RetryBudget:
    """A client-wide brake on retries, so a failing server is not hammered.

    It looks at the outcomes of the last `window` attempts (of every call of the
    client). While failures are more than `max_failure_ratio` of them (and there
    are at least `min_outcomes`), retries are refused and failures are raised at
    once; as soon as successes bring the ratio down, retries resume. So a dead
    server gets about `min_outcomes` retries, then none, while a steady fault
    rate below the ratio (20 % of creates failing, say) never stops a retry.
    A wait the server asked for (Retry-After) is always permitted: obeying it is
    not hammering.
    """

    window: int = 100
    max_failure_ratio: float = 0.5
    min_outcomes: int = 20
    _outcomes: deque[bool] = attrs.field(init=False, factory=deque)
    _failures: int = attrs.field(init=False, default=0)

    def record(self, ok: bool) -> None:
        """Count one attempt's outcome."""
        outcomes = self._outcomes
        outcomes.append(ok)
        if not ok:
            self._failures += 1
        if len(outcomes) > self.window and not outcomes.popleft():
            self._failures -= 1

    @property
    def failure_ratio(self) -> float:
        """Failures among the attempts in the window (0 when there are none)."""
        return self._failures / len(self._outcomes) if self._outcomes else 0.0

    @property
    def exhausted(self) -> bool:
        """True while failures dominate the window: retries are refused."""
        return (
            len(self._outcomes) >= self.min_outcomes and self.failure_ratio > self.max_failure_ratio
        )

    def permits(self, exc: BaseException) -> bool:
        """May `exc` be retried? Always when the server said when; else unless exhausted."""
        return getattr(exc, "retry_after", None) is not None or not self.exhausted
