"""Safe creates: retry what is safe, reconcile what is ambiguous, never train twice.

`POST /models` has no idempotency key. When an attempt fails in a way that
leaves its outcome unknown (the request may have been stored), we look for
the model before sending again: same use case, name and `from_model_id`,
created since our first attempt (less the allowed clock skew), with the same
sample ids. Found: adopt it. Not found twice, a settle delay apart: resend.
Still unknown when the retries run out: `AmbiguousCreateError`, never a guess.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ._retry import CreateFailure, classify_create_failure
from ._wire import create_request, decode_model
from .errors import AmbiguousCreateError, HappyRobotError, NotFoundError
from .types import CreateModel, Model

if TYPE_CHECKING:
    from .client import HappyRobotClient

__all__ = ["create_safely", "find_created", "reconcile"]

log = logging.getLogger("happyrobot_async")


async def create_safely(client: HappyRobotClient, create: CreateModel) -> Model:
    """Create the model once, whatever the network does; see the module docstring."""
    policy = client.retry_policy
    request = create_request(create)
    first_started: datetime | None = None
    for attempt in range(1, policy.max_retries + 2):
        started = datetime.now(UTC)
        try:
            response = await client._send(request, attempt)
            model = decode_model(response.status, response.headers, response.body)
        except HappyRobotError as exc:
            failure = classify_create_failure(exc)
            if failure is CreateFailure.AMBIGUOUS and first_started is None:
                first_started = started
            retries_left = attempt <= policy.max_retries
            log.warning(
                "create %r: attempt %d failed (%s, %s)", create.name, attempt, failure.value, exc
            )
            if failure is CreateFailure.FATAL:
                raise
            if failure is CreateFailure.AMBIGUOUS:
                try:
                    adopted = await reconcile(client, create, first_started or started)
                except HappyRobotError as lookup_error:
                    log.warning("create %r: could not reconcile (%s)", create.name, lookup_error)
                    raise AmbiguousCreateError(create, attempts=attempt, cause=exc) from exc
                if adopted is not None:
                    return adopted
                if not retries_left or not client.retry_budget.try_spend():
                    raise AmbiguousCreateError(create, attempts=attempt, cause=exc) from exc
                log.info("create %r: no model was stored; sending again", create.name)
                continue
            if not retries_left or policy.waits_too_long(exc):
                raise
            if not client.retry_budget.permits(exc):
                raise
            delay = policy.delay_for(exc, attempt - 1)
            log.info("create %r: %s, retrying in %.2f s", create.name, failure.value, delay)
            await asyncio.sleep(delay)
        else:
            client.retry_budget.refund()
            return model
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


async def reconcile(client: HappyRobotClient, create: CreateModel, since: datetime) -> Model | None:
    """The model a POST sent at `since` stored, if any: two looks, `reconcile_delay` apart.

    Raises the lookup's own error if the server cannot be asked: then nobody knows.
    """
    policy = client.retry_policy
    for look in (1, 2):
        if look == 2:
            await asyncio.sleep(policy.reconcile_delay)
        found = await find_created(client, create, since - timedelta(seconds=policy.clock_skew))
        if found is not None:
            log.info("create %r: adopted model %s, already stored", create.name, found.id)
            return found
    return None


async def find_created(
    client: HappyRobotClient, create: CreateModel, since: datetime
) -> Model | None:
    """The model `create` made at or after `since`, if the server holds one; oldest first."""
    listed = await client.models.list(use_case_id=create.use_case_id)
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
            full = await client.models.get(candidate.id)
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
