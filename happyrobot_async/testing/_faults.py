"""Fault descriptions and the seeded dice that decide when they fire."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

import attrs

FaultKind = Literal[
    "latency",
    "rate_limit",
    "server_error",
    "drop",
    "truncate",
    "commit_then_fail",
    "redirect",
    "malformed_json",
    "wrong_shape",
    "hang",
    "client_error",
    "oversize",
    "stall",
]
Route = Literal["create", "get", "list"]

FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ROUTES: tuple[str, ...] = get_args(Route)

#: Faults decided before the request is handled (nothing is stored when they fire).
BEFORE_KINDS = frozenset({"rate_limit", "server_error", "drop", "redirect", "hang", "client_error"})
#: Faults applied to a successful response (a create is stored first).
AFTER_KINDS = frozenset(
    {"truncate", "commit_then_fail", "malformed_json", "wrong_shape", "oversize", "stall"}
)

_SERVER_ERROR_STATUSES = (500, 502, 503, 504)
_CLIENT_ERROR_STATUSES = range(400, 500)


def _check_rate(_: object, __: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"rate must be within 0..1, got {value!r}")


def _default_status(fault: Fault) -> int:
    return 400 if fault.kind == "client_error" else 500


@attrs.frozen
class Fault:
    """One kind of misbehaviour, fired on a fraction `rate` of the requests to `route`.

    `route=None` means every API route; `model_id` narrows a fault to the requests
    for that one model (`GET /models/{model_id}`; route "get" or None). Kinds decided
    before handling (nothing is stored): rate_limit, server_error, client_error,
    drop, redirect and hang (no answer at all until the client disconnects or the
    simulator closes). Kinds that spoil a successful response (a create is stored
    first): truncate, commit_then_fail, malformed_json, wrong_shape, oversize
    (the JSON body followed by `size` bytes of whitespace) and stall (the status,
    headers and half the body, then nothing until the client disconnects or the
    simulator closes). latency delays and combines with any other.

    Parameters only matter to the kinds that use them: `delay` (latency, real
    seconds), `retry_after` (rate_limit: default 1.0; server_error and client_error:
    a `Retry-After` header only when set), `status` (server_error: 500/502/503/504,
    default 500; client_error: 400..499, default 400), `html` (server_error and
    commit_then_fail: a proxy-like HTML body), `then` (commit_then_fail: "drop", 500
    or 504), `location` (redirect: full URL; default: the same path on
    http://127.0.0.2:9), `body` (wrong_shape: the JSON to send instead of the
    documented one) and `size` (oversize: bytes of padding, default 2_000_000).
    """

    kind: FaultKind = attrs.field(validator=attrs.validators.in_(FAULT_KINDS))
    rate: float = attrs.field(default=1.0, converter=float, validator=_check_rate)
    route: Route | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(ROUTES))
    )
    delay: float = attrs.field(default=0.5, kw_only=True)
    retry_after: float | None = attrs.field(default=None, kw_only=True)
    status: int = attrs.field(default=attrs.Factory(_default_status, takes_self=True), kw_only=True)
    html: bool = attrs.field(default=False, kw_only=True)
    then: Literal["drop"] | int = attrs.field(default="drop", kw_only=True)
    location: str | None = attrs.field(default=None, kw_only=True)
    body: Any = attrs.field(default=None, kw_only=True)
    size: int = attrs.field(default=2_000_000, kw_only=True)
    model_id: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.kind == "server_error" and self.status not in _SERVER_ERROR_STATUSES:
            raise ValueError(f"server_error status must be one of {_SERVER_ERROR_STATUSES}")
        if self.kind == "client_error" and self.status not in _CLIENT_ERROR_STATUSES:
            raise ValueError("client_error status must be within 400..499")
        if self.size < 0:
            raise ValueError("size must be >= 0")
        if self.model_id is not None:
            if not isinstance(self.model_id, str) or not self.model_id:
                raise ValueError("model_id must be a non-empty string")
            if self.route not in (None, "get") or self.kind == "commit_then_fail":
                raise ValueError('model_id only applies to the "get" route')
        if self.kind == "commit_then_fail":
            if self.then not in ("drop", 500, 504):
                raise ValueError('commit_then_fail `then` must be "drop", 500 or 504')
            if self.route not in (None, "create"):
                raise ValueError("commit_then_fail only applies to the create route")
        if self.delay < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("delay and retry_after must be >= 0")

    def applies_to(self, route: str, model_id: str | None = None) -> bool:
        """Tell whether this fault may fire on `route` (for `model_id`, if the path has one)."""
        if self.kind == "commit_then_fail":
            return route == "create"
        if self.model_id is not None and self.model_id != model_id:
            return False
        return self.route is None or self.route == route

    @property
    def rate_limit_retry_after(self) -> float:
        """The `Retry-After` of a rate_limit fault, in seconds."""
        return 1.0 if self.retry_after is None else self.retry_after


@attrs.frozen
class FaultDecision:
    """What the dice said for one request: total extra latency and at most one fault."""

    delay: float = 0.0
    fault: Fault | None = None


@attrs.define
class FaultPlan:
    """The active faults plus the seeded RNG that decides, request by request, which fire.

    Latency faults roll independently and add up; of the other faults at most one
    fires per request, picked by one roll over their cumulative rates, so each fires
    at its own configured rate (as long as the rates of one route sum to <= 1).
    """

    _rng: random.Random
    _faults: tuple[Fault, ...] = ()
    #: Whether any active fault is bound to a model (only then do requests need their id).
    per_model: bool = attrs.field(init=False, default=False)

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The active faults."""
        return self._faults

    @faults.setter
    def faults(self, faults: Iterable[Fault]) -> None:
        faults = tuple(faults)
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a Fault, got {fault!r}")
        self._faults = faults
        self.per_model = any(fault.model_id is not None for fault in faults)

    def decide(self, route: str, model_id: str | None = None) -> FaultDecision:
        """Roll the dice for one request to `route` (for `model_id`, if the path has one)."""
        delay = 0.0
        others: list[Fault] = []
        for fault in self._faults:
            if not fault.applies_to(route, model_id):
                continue
            if fault.kind == "latency":
                if self._roll(fault.rate):
                    delay += fault.delay
            else:
                others.append(fault)
        return FaultDecision(delay=delay, fault=self._pick(others))

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _pick(self, faults: Sequence[Fault]) -> Fault | None:
        if not faults:
            return None
        roll = self._rng.random()
        total = 0.0
        for fault in faults:
            total += fault.rate
            if roll < total:
                return fault
        return None


@attrs.define
class TokenBucket:
    """A server-side rate limit: `rate` tokens per second, holding at most `burst`."""

    rate: float
    burst: float
    _tokens: float = attrs.field(init=False)
    _stamp: float = attrs.field(init=False, factory=time.monotonic)

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate_limit_rps must be > 0 and the burst >= 1")
        self._tokens = self.burst

    def take(self) -> float:
        """Take a token; return 0.0 on success, else the seconds until one is free."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def retry_after_headers(seconds: float) -> dict[str, str]:
    """Build `Retry-After` (whole seconds, rounded up) and `retry-after-ms` (exact)."""
    return {
        "Retry-After": str(max(0, math.ceil(seconds))),
        "retry-after-ms": str(max(0, math.ceil(seconds * 1000))),
    }
