"""Safe creates: resend what is safe, reconcile what is ambiguous, never train twice.

`POST /models` has no idempotency key. When an attempt fails in a way that
leaves its outcome unknown (the request may have been stored), we look for the
model before sending again: same use case and name, created (in the server's
time) no earlier than our first attempt began, less `reconcile_tolerance`.
Each candidate is fetched and compared on `from_model_id` and the sample ids:

- a candidate whose every field matches is ours (the earliest, if several);
- a field present and different rules a candidate out;
- fields the server left out (the contract allows it) prove nothing either
  way: one such candidate alone is adopted (logged as partial evidence);
  several are `AmbiguousCreateError`.

No candidate, twice, a settle delay apart: resend. Still unknown when the
retries run out: `AmbiguousCreateError`, never a guess. Which failures are
ambiguous is `_retry`'s table; the loop is `_attempts`'.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from ._attempts import Attempts, Sleep
from ._http import Response
from ._logging import log
from ._retry import RetryPolicy
from ._serverclock import ServerClock
from ._wire import BadItem, Listed, Request, create_request, decode_model
from .errors import AmbiguousCreateError, HappyRobotError, NotFoundError
from .types import CreateModel, Model

__all__: list[str] = []


Send = Callable[[Request, int], Awaitable[Response]]


class ModelLookup(Protocol):
    """The two reads reconciling needs (`client.models`)."""

    async def get(self, model_id: str) -> Model: ...

    async def _list(self, *, use_case_id: str | None = None) -> Listed: ...


class Reconciler:
    """Looks for the model a create may have stored, in the server's time."""

    def __init__(
        self, lookup: ModelLookup, clock: ServerClock, policy: RetryPolicy, sleep: Sleep
    ) -> None:
        self.lookup, self.clock, self.policy, self.sleep = lookup, clock, policy, sleep

    async def reconcile(self, create: CreateModel, started: float) -> Model | None:
        """The model a create first sent at `started` (our epoch seconds) stored, if any.

        Two looks, `reconcile_delay` apart. Raises the lookup's own error if the
        server cannot be asked, and `AmbiguousCreateError` if partial data leaves
        several candidates: then nobody knows.
        """
        for look in (1, 2):
            if look == 2:
                await self.sleep(self.policy.reconcile_delay)
            found = await self.find(create, started)
            if found is not None:
                log.info(
                    "create %r: adopted model %s, already stored",
                    create.name,
                    found.id,
                    extra={"model_id": found.id, "use_case_id": create.use_case_id},
                )
                return found
        return None

    async def find(self, create: CreateModel, started: float) -> Model | None:
        """One look: the model `create` stored at or after `started`, if the server holds one."""
        listed = await self.lookup._list(use_case_id=create.use_case_id)
        earliest = self.server_time(started)  # after the list: its Date header counts too
        candidates = sorted(
            (
                m
                for m in listed.models
                if m.name == create.name
                and m.created_at >= earliest
                and m.from_model_id in (None, create.from_model_id)
            ),
            key=lambda m: m.created_at,
        )
        # An item that did not decode may be ours: look at it alone, or give up.
        unreadable = [b for b in listed.bad if b.name in (None, create.name)]
        possible: list[Model] = []
        pool: list[Model | BadItem] = [*candidates, *unreadable]
        for candidate in pool:
            try:
                full = await self.lookup.get(_id_of(candidate))
            except NotFoundError:
                continue
            if full.name != create.name or full.created_at < earliest:
                continue
            evidence = _evidence(full, create)
            if evidence is Evidence.MATCH:
                if len(candidates) > 1:
                    log.warning(
                        "create %r: %d candidates; adopting the earliest that matches, %s",
                        create.name,
                        len(candidates),
                        full.id,
                    )
                return full
            if evidence is Evidence.PARTIAL:
                possible.append(full)
        if len(possible) > 1:  # raised to the caller: INFO, not WARNING
            log.info(
                "create %r: %d models may be ours and the server omits what would tell them apart",
                create.name,
                len(possible),
            )
            raise AmbiguousCreateError(create, attempts=0)
        if possible:
            log.warning(
                "create %r: adopted %s on partial evidence",
                create.name,
                possible[0].id,
                extra={"model_id": possible[0].id, "use_case_id": create.use_case_id},
            )
            return possible[0]
        return None

    def server_time(self, ours: float) -> datetime:
        """The earliest the server's clock can have read when ours read `ours`, with slack."""
        offset = self.clock.offset
        if offset is None:  # no Date header seen: fall back on the assumed skew
            slack = self.policy.clock_skew
            offset = 0.0
        else:
            slack = self.clock.uncertainty + self.policy.reconcile_tolerance
        return datetime.fromtimestamp(ours + offset - slack, UTC)


class Evidence(enum.Enum):
    """How far a model's fields show it is the one a create asked for."""

    MATCH = "every field matches"
    PARTIAL = "no field differs, some are missing"
    MISMATCH = "a field differs"


def _evidence(model: Model, create: CreateModel) -> Evidence:
    pairs = (
        (model.from_model_id, create.from_model_id),
        (_sorted(model.train_sample_ids), sorted(create.train_sample_ids)),
        (_sorted(model.test_sample_ids), sorted(create.test_sample_ids)),
    )
    if any(seen is not None and seen != wanted for seen, wanted in pairs):
        return Evidence.MISMATCH
    if any(seen is None for seen, _ in pairs):
        return Evidence.PARTIAL
    return Evidence.MATCH


def _id_of(candidate: Model | BadItem) -> str:
    """The id to fetch a candidate by; an unreadable item without one leaves nobody knowing."""
    if isinstance(candidate, Model):
        return candidate.id
    if candidate.model_id is None:
        raise candidate.error
    return candidate.model_id


def _sorted(ids: tuple[str, ...] | None) -> list[str] | None:
    return None if ids is None else sorted(ids)


async def create_safely(
    send: Send, attempts: Attempts, reconciler: Reconciler, create: CreateModel
) -> Model:
    """Create the model once, whatever the network does; see the module docstring."""
    safe = _SafeCreate(send, reconciler, create)
    fields = {"method": "POST", "path": "/models", "use_case_id": create.use_case_id}
    label = f"create {create.name!r}"
    return await attempts.run(
        safe.request, safe.decode, send=safe.send, reconcile=safe, label=label, fields=fields
    )


class _SafeCreate:
    """One create's attempts, and how to settle an ambiguous one."""

    def __init__(self, send: Send, reconciler: Reconciler, create: CreateModel) -> None:
        self._send, self.reconciler, self.create = send, reconciler, create
        self.request = create_request(create)
        self.attempts = 0
        self.sent = 0.0
        self.started: float | None = None
        """When the first attempt began (our epoch seconds): what it stored is no older."""

    async def send(self, request: Request, number: int) -> Response:
        self.sent = time.time()
        if self.started is None:
            self.started = self.sent
        self.attempts = number
        return await self._send(request, number)

    def decode(
        self, status: int, headers: Mapping[str, str], body: bytes, request: Request
    ) -> Model:
        model = decode_model(status, headers, body, request)
        self.reconciler.clock.observe(model.created_at.timestamp(), 1.0, self.sent, time.time())
        return model

    async def find(self, error: HappyRobotError) -> Model | None:
        log.info(
            "create %r: attempt %d ambiguous (%s); looking for it",
            self.create.name,
            self.attempts,
            error,
            extra={"use_case_id": self.create.use_case_id, "attempt": self.attempts},
        )
        assert self.started is not None
        try:
            return await self.reconciler.reconcile(self.create, self.started)
        except HappyRobotError as lookup_error:
            log.info("create %r: could not reconcile (%s)", self.create.name, lookup_error)
            raise self.unsettled(error, self.attempts) from error

    def unsettled(self, error: HappyRobotError, attempts: int) -> HappyRobotError:
        return AmbiguousCreateError(self.create, attempts=attempts, cause=error)
