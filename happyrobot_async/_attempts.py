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
from ._response import Response
from ._retry import RetryBudget, RetryPolicy
from ._wire import Request
from .errors import HappyRobotError

__all__: list[str] = []

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Sleep = Callable[[float], Awaitable[None]]
Send = Callable[[Request, int], Awaitable[Response]]
Decode = Callable[[int, Mapping[str, str], bytes, Request], T]
Clock = Callable[[], float]


class Reconcile(Protocol[T_co]):
    """How a create settles an ambiguous attempt: find what it stored, or say it is unsettled."""

    async def find(self, error: HappyRobotError) -> T_co | None:
        """What the failed attempt stored, if anything (raises if that cannot be known)."""

    def unsettled(self, error: HappyRobotError, attempts: int) -> HappyRobotError:
        """The error to raise when nothing was found and no resend is allowed."""

    def describe(self) -> tuple[str, Mapping[str, object]]:
        """How log lines name the call, and their structured fields."""


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
        request: Request,
        decode: Decode[T],
        *,
        send: Send,
        reconcile: Reconcile[T] | None = None,
        label: str | None = None,
        fields: Mapping[str, object] | None = None,
    ) -> T:
        """Send `request` (attempt 1, 2, ...) and decode the response, until one attempt
        succeeds or the policy gives up.

        With `reconcile` (creates), failures are judged by the create column of
        the retry table; without it, by the read column. Log lines name the call
        by `label` and carry `fields` as structured fields (default: what
        `reconcile.describe()` says, else the request's method and path); both
        are only worked out when something fails.
        """
        number, retries, refusals = 1, 0, 0
        started = self.clock()
        budget = self.budget
        while True:
            try:
                response = await send(request, number)
                value = decode(response.status, response.headers, response.body, request)
            except HappyRobotError as exc:
                if label is None or fields is None:
                    label, fields = (
                        reconcile.describe()
                        if reconcile is not None
                        else (
                            f"{request.method} {request.path}",
                            {"method": request.method, "path": request.path},
                        )
                    )
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
                        extra={**fields, "attempt": number},
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
                        extra={**fields, "attempt": number, "status": _status(exc)},
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
