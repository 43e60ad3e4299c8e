"""The one attempt loop, for reads and creates alike.

Each failure is handed to the policy (`RetryPolicy.decide`), which answers:
reconcile first (creates whose outcome is unknown), send again after a delay,
or give up. This loop acts on the answer. It is the only place that waits
between attempts and the only place that consults the retry budget, always
the same way (`RetryBudget.permits`; every outcome but a refusal is recorded
there). `sleep` and `clock` are injected, so retry tests need not wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from ._logging import log
from ._retry import RetryBudget, RetryPolicy
from .errors import HappyRobotError

__all__: list[str] = []

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class Reconcile(Protocol[T_co]):
    """How a create settles an ambiguous attempt: find what it stored, or say it is unsettled."""

    async def find(self, error: HappyRobotError) -> T_co | None:
        """What the failed attempt stored, if anything (raises if that cannot be known)."""

    def unsettled(self, error: HappyRobotError, attempts: int) -> HappyRobotError:
        """The error to raise when nothing was found and no resend is allowed."""


class Attempts:
    """Runs attempts under one policy and one client-wide budget."""

    def __init__(
        self,
        policy: RetryPolicy,
        budget: RetryBudget,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.policy = policy
        self.budget = budget
        self.sleep = sleep
        self.clock = clock

    async def run(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        label: str,
        reconcile: Reconcile[T] | None = None,
        fields: Mapping[str, object] | None = None,
    ) -> T:
        """Call `attempt(1)`, `attempt(2)`, ... until one succeeds or the policy gives up.

        With `reconcile` (creates), failures are judged by the create column of
        the retry table; without it, by the read column. `label` names the call
        in log lines, and `fields` are the records' structured fields (`extra=`).
        """
        number, retries, refusals = 1, 0, 0
        started = self.clock()
        budget = self.budget
        while True:
            try:
                value = await attempt(number)
            except HappyRobotError as exc:
                decision = self.policy.decide(
                    exc,
                    retries=retries,
                    refusals=refusals,
                    elapsed=self.clock() - started,
                    create=reconcile is not None,
                )
                if not decision.refused:
                    budget.record(False)
                if decision.reconcile:
                    assert reconcile is not None
                    found = await reconcile.find(exc)
                    if found is not None:
                        return found
                    if not decision.retry or not budget.permits(exc):
                        raise reconcile.unsettled(exc, number) from exc
                    log.info(
                        "%s: no model was stored; sending again",
                        label,
                        extra={**(fields or {}), "attempt": number},
                    )
                elif not decision.retry or not budget.permits(exc):
                    raise
                else:
                    log.warning(
                        "retrying %s in %.2f s after %s (attempt %d failed)",
                        label,
                        decision.delay,
                        _describe(exc),
                        number,
                        extra={**(fields or {}), "attempt": number, "status": _status(exc)},
                    )
                    await self.sleep(decision.delay)
                number += 1
                if decision.refused:
                    refusals += 1
                else:
                    retries += 1
            else:
                budget.record(True)
                return value


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    return f"HTTP {status}" if status is not None else type(exc).__name__
