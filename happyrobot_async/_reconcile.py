"""Reconcile: did a create whose answer was lost store a model? Look, in the server's time.

A candidate is a model of the create's use case with its name, created (in the
server's time) no earlier than the create's first attempt began less
`reconcile_tolerance`, and not already returned by another create of this
client. Each candidate is fetched and compared on `from_model_id` and the
sample ids:

- every field matches: it is ours (the earliest, if several);
- a field present and different: not ours;
- fields the server left out (the contract allows it) prove nothing either
  way: one such candidate alone is adopted (logged as partial evidence);
  several are `AmbiguousCreateError`;
- a candidate the list showed but a GET cannot find (a replica behind), or a
  list item that does not decode and cannot be fetched, leaves nobody knowing:
  `AmbiguousCreateError`, never a resend.

The server's time comes from `ServerClock`. The window never starts later than
it would have by the clock as it was when the create was first sent (a clock
that steps forward mid-reconcile must not hide our model). While no `Date` was
ever seen, `clock_skew` is assumed, and a matching model older than that window
is not taken as proof of nothing: `AmbiguousCreateError`.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Final, Protocol

from ._attempts import Sleep
from ._logging import log
from ._response import Response, keep_response, last_response
from ._retry import RetryPolicy
from ._serverclock import ServerClock
from ._wire import BadItem, Listed
from .errors import AmbiguousCreateError, HappyRobotError, NotFoundError
from .types import CreateModel, Model

__all__: list[str] = []

#: How many ids of models this client's creates returned are remembered (never adopted again).
CLAIMS_KEPT: Final = 100_000


class ModelLookup(Protocol):
    """The two reads reconciling needs (`client.models`)."""

    async def get(self, model_id: str) -> Model: ...

    async def _list(self, *, use_case_id: str | None = None) -> Listed: ...


class Evidence(enum.Enum):
    """How far a model's fields show it is the one a create asked for."""

    MATCH = "every field matches"
    PARTIAL = "no field differs, some are missing"
    MISMATCH = "a field differs"


class Reconciler:
    """Looks for the model a create may have stored; remembers what creates returned."""

    def __init__(
        self, lookup: ModelLookup, clock: ServerClock, policy: RetryPolicy, sleep: Sleep
    ) -> None:
        self.lookup, self.clock, self.policy, self.sleep = lookup, clock, policy, sleep
        self._claimed: OrderedDict[str, None] = OrderedDict()

    def claim(self, model: Model) -> Model:
        """`model` was returned by a create: no other create may adopt it."""
        self.claim_id(model.id)
        return model

    def claim_id(self, model_id: str) -> None:
        """No create may adopt model `model_id` (a create returned it, or an earlier run)."""
        self._claimed[model_id] = None
        self._claimed.move_to_end(model_id)
        if len(self._claimed) > CLAIMS_KEPT:
            self._claimed.popitem(last=False)

    def floor(self, ours: float) -> float | None:
        """The earliest server time (epoch seconds) when ours read `ours`, by the clock now."""
        lowest = self.clock.lowest
        if lowest is None:
            return None
        return ours + lowest - self.policy.reconcile_tolerance

    async def reconcile(
        self,
        create: CreateModel,
        started: float,
        *,
        floor: float | None = None,
        settle: float | None = None,
    ) -> Model | None:
        """The model a create first sent at `started` (our epoch seconds) stored, if any.

        Two looks, `settle` (default `reconcile_delay`) apart. `floor` is what
        `floor(started)` said when the create was sent. Raises the lookup's own
        error if the server cannot be asked, `AmbiguousCreateError` if nobody
        can know.
        """
        for look in (1, 2):
            if look == 2:
                await self.sleep(self.policy.reconcile_delay if settle is None else settle)
            found = await self._find(create, started, floor)
            if found is not None:
                log.info(
                    "create %r: adopted model %s, already stored",
                    create.name,
                    found.id,
                    extra={"model_id": found.id, "use_case_id": create.use_case_id},
                )
                return self.claim(found)
        return None

    async def _find(self, create: CreateModel, started: float, floor: float | None) -> Model | None:
        listed = await self.lookup._list(use_case_id=create.use_case_id)
        # after the list: its Date header counts too
        now_floor = self.floor(started)
        known = now_floor is not None
        if now_floor is None:
            earliest = started - self.policy.clock_skew
        else:
            earliest = now_floor if floor is None else min(now_floor, floor)
        named = {
            m.id: m
            for m in listed.models
            if m.name == create.name
            and m.id not in self._claimed
            and m.from_model_id in (None, create.from_model_id)
            and (_latest(m) >= earliest or not known)
        }
        ordered = sorted(named.values(), key=lambda m: m.created_at)
        unreadable = [b for b in listed.bad if b.name in (None, create.name)]
        pool: list[Model | BadItem] = [*ordered, *unreadable]
        possible: list[tuple[Model, Response | None]] = []
        unknown = 0
        for candidate in pool:
            try:
                full = await self.lookup.get(_id_of(candidate))
            except NotFoundError:
                unknown += 1  # listed, yet not found: a replica behind, or deleted
                continue
            response = last_response()
            if full.name != create.name or full.id in self._claimed:
                continue
            evidence = _evidence(full, create)
            if evidence is Evidence.MISMATCH:
                continue
            if _latest(full) < earliest:  # only when the clock is unknown
                raise self._unclear(create, "one matches from before the assumed clock skew")
            if evidence is Evidence.MATCH:
                if response is not None:
                    keep_response(response)
                return full
            possible.append((full, response))
        if unknown or len(possible) > 1:
            raise self._unclear(create, f"{len(possible) + unknown} cannot be told apart")
        if possible:
            model, response = possible[0]
            log.warning(
                "create %r: adopted %s on partial evidence",
                create.name,
                model.id,
                extra={"model_id": model.id, "use_case_id": create.use_case_id},
            )
            if response is not None:
                keep_response(response)
            return model
        return None

    @staticmethod
    def _unclear(create: CreateModel, why: str) -> HappyRobotError:
        # raised to the caller: INFO, not WARNING
        log.info("create %r: models may be ours but %s", create.name, why)
        return AmbiguousCreateError(create, attempts=0)


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


def _latest(model: Model) -> float:
    """The latest instant `created_at` can stand for: a whole-second stamp means [s, s + 1)."""
    stamp = model.created_at.timestamp()
    return stamp + 1.0 if model.created_at.microsecond == 0 else stamp


def _id_of(candidate: Model | BadItem) -> str:
    """The id to fetch a candidate by; an unreadable item without one leaves nobody knowing."""
    if isinstance(candidate, Model):
        return candidate.id
    if candidate.model_id is None:
        raise candidate.error
    return candidate.model_id


def _sorted(ids: tuple[str, ...] | None) -> list[str] | None:
    return None if ids is None else sorted(ids)
