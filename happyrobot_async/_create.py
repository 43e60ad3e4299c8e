"""Safe creates: resend what is safe, reconcile what is ambiguous, never train twice.

`POST /models` has no idempotency key. When an attempt fails in a way that
leaves its outcome unknown (the request may have been stored), we look for
the model before sending again: same use case, name and `from_model_id`,
created since our first ambiguous attempt (less the allowed clock skew), with
the same sample ids. Found: adopt it. Not found twice, a settle delay apart:
resend. Still unknown when the retries run out: `AmbiguousCreateError`, never
a guess. Which failures are ambiguous is `_retry`'s table; the loop is
`_attempts`'.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ._attempts import Attempts, Sleep
from ._http import Response
from ._retry import RetryPolicy
from ._wire import Request, create_request, decode_model
from .errors import AmbiguousCreateError, HappyRobotError, NotFoundError
from .types import CreateModel, Model

__all__: list[str] = []

log = logging.getLogger("happyrobot_async")

Send = Callable[[Request, int], Awaitable[Response]]


class ModelLookup(Protocol):
    """The two reads reconciling needs (`client.models`)."""

    async def get(self, model_id: str) -> Model: ...

    async def list(self, *, use_case_id: str | None = None) -> Sequence[Model]: ...


async def create_safely(
    send: Send, attempts: Attempts, lookup: ModelLookup, create: CreateModel
) -> Model:
    """Create the model once, whatever the network does; see the module docstring."""
    safe = _SafeCreate(send, lookup, create, attempts.policy, attempts.sleep)
    return await attempts.run(safe.attempt, label=f"create {create.name!r}", reconcile=safe)


class _SafeCreate:
    """One create's attempts, and how to settle an ambiguous one."""

    def __init__(
        self, send: Send, lookup: ModelLookup, create: CreateModel, policy: RetryPolicy, sleep: Sleep
    ) -> None:
        self.send, self.lookup, self.create = send, lookup, create
        self.policy, self.sleep = policy, sleep
        self.request = create_request(create)
        self.attempts = 0
        self.last_started = datetime.now(UTC)
        self.since: datetime | None = None
        """When the first ambiguous attempt started: what it stored is no older."""

    async def attempt(self, number: int) -> Model:
        self.attempts, self.last_started = number, datetime.now(UTC)
        response = await self.send(self.request, number)
        return decode_model(response.status, response.headers, response.body, self.request)

    async def find(self, error: HappyRobotError) -> Model | None:
        log.warning("create %r: attempt %d ambiguous (%s)", self.create.name, self.attempts, error)
        if self.since is None:
            self.since = self.last_started
        try:
            return await reconcile(self.lookup, self.create, self.since, self.policy, self.sleep)
        except HappyRobotError as lookup_error:
            log.warning("create %r: could not reconcile (%s)", self.create.name, lookup_error)
            raise self.unsettled(error, self.attempts) from error

    def unsettled(self, error: HappyRobotError, attempts: int) -> HappyRobotError:
        return AmbiguousCreateError(self.create, attempts=attempts, cause=error)


async def reconcile(
    lookup: ModelLookup, create: CreateModel, since: datetime, policy: RetryPolicy, sleep: Sleep
) -> Model | None:
    """The model a POST sent at `since` stored, if any: two looks, `reconcile_delay` apart.

    Raises the lookup's own error if the server cannot be asked: then nobody knows.
    """
    for look in (1, 2):
        if look == 2:
            await sleep(policy.reconcile_delay)
        found = await find_created(lookup, create, since - timedelta(seconds=policy.clock_skew))
        if found is not None:
            log.info("create %r: adopted model %s, already stored", create.name, found.id)
            return found
    return None


async def find_created(lookup: ModelLookup, create: CreateModel, since: datetime) -> Model | None:
    """The model `create` made at or after `since`, if the server holds one; oldest first."""
    listed = await lookup.list(use_case_id=create.use_case_id)
    candidates = sorted(
        (
            m
            for m in listed
            if m.name == create.name
            and m.from_model_id == create.from_model_id
            and m.created_at >= since
        ),
        key=lambda m: m.created_at,
    )
    for candidate in candidates:
        try:
            full = await lookup.get(candidate.id)
        except NotFoundError:
            continue
        if sorted(full.train_sample_ids or ()) == sorted(create.train_sample_ids) and sorted(
            full.test_sample_ids or ()
        ) == sorted(create.test_sample_ids):
            if len(candidates) > 1:
                log.warning(
                    "create %r: %d matching models exist; adopting the oldest, %s",
                    create.name,
                    len(candidates),
                    full.id,
                )
            return full
    return None
