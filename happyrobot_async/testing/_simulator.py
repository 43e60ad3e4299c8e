"""`Simulator`: the API on 127.0.0.1, started and stopped as an async context manager."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

import attrs
from aiohttp import web

from ._app import API_PREFIX, SimState, make_app
from ._clock import SimClock, TimestampFormat, WallClock
from ._faults import Fault, FaultPlan, TokenBucket
from ._models import OptionalFields, SimModel
from ._stats import SimulatorStats, StatsRecorder
from ._store import Lifecycle, Store

T = TypeVar("T")


class _Live(Generic[T]):
    """A setting of the running server: `sim.x` reads and writes its state at `path`.

    `path` is an attribute of the `SimState`, or dotted (`"wall.offset"`); whatever
    checks that attribute makes on assignment (an attrs validator) applies.
    """

    def __init__(self, path: str, doc: str) -> None:
        *self._holders, self._name = path.split(".")
        self.__doc__ = doc

    def _holder(self, sim: Simulator) -> Any:
        return functools.reduce(getattr, self._holders, sim._state)

    @overload
    def __get__(self, sim: None, owner: type) -> Self: ...
    @overload
    def __get__(self, sim: Simulator, owner: type) -> T: ...
    def __get__(self, sim: Simulator | None, owner: type) -> Self | T:
        if sim is None:
            return self
        value: T = getattr(self._holder(sim), self._name)
        return value

    def __set__(self, sim: Simulator, value: T) -> None:
        setattr(self._holder(sim), self._name, value)


@attrs.define(kw_only=True)
class Simulator:
    """A real HTTP server that behaves like HappyRobot's models API, seeded and scriptable.

    `async with Simulator(seed=0) as sim:` listens on `host:port` (port 0: a free
    one); `sim.base_url` is the API root and `sim.api_key` a key of the default
    organization. Everything random (ids, outcomes, durations, faults) comes from
    `seed`.

    Settings: `speed` (simulated seconds per real second; `sim.clock.advance()`
    steps by hand), `pending_seconds` / `training_seconds` ((low, high) ranges of
    simulated seconds), `failure_rate` (chance a model ends failed), `use_cases`
    and `base_models_per_use_case` (seeded per organization), `faults`,
    `rate_limit_rps` / `rate_limit_burst` (a token bucket over all API requests),
    `extra_fields` and `optional_fields` (response variants), `log_size` (request
    log length). Paths whose model id is not 24 characters answer 404.

    Hostile-server settings (also settable at runtime): `clock_offset` (seconds the
    server's wall clock is ahead of real UTC, negative: behind; it shifts every
    `created_at` stamped from then on and the `Date` header of every API response)
    and `timestamp_format` (how `created_at` is spelled from then on: "Z", "z",
    "+00:00" or "fraction"; set it at construction to cover the seeded base models).
    `add_raw_item()` slips unvalidated JSON among a use case's models,
    `add_api_key(forbidden=True)` makes a key that is refused with 403, and the
    `Fault` kinds hang, stall, client_error and oversize (optionally bound to one
    `model_id`) misbehave on demand.
    """

    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    _speed: float = attrs.field(default=1.0, alias="speed")
    _pending_seconds: tuple[float, float] = attrs.field(default=(1.0, 3.0), alias="pending_seconds")
    _training_seconds: tuple[float, float] = attrs.field(
        default=(3.0, 10.0), alias="training_seconds"
    )
    _failure_rate: float = attrs.field(default=0.1, alias="failure_rate")
    _use_cases: int = attrs.field(default=3, alias="use_cases")
    _base_models_per_use_case: int = attrs.field(default=2, alias="base_models_per_use_case")
    _initial_faults: Sequence[Fault] = attrs.field(default=(), alias="faults")
    _rate_limit_rps: float | None = attrs.field(default=None, alias="rate_limit_rps")
    _rate_limit_burst: float | None = attrs.field(default=None, alias="rate_limit_burst")
    _extra_fields: bool = attrs.field(default=False, alias="extra_fields")
    _optional_fields: OptionalFields = attrs.field(default="present", alias="optional_fields")
    _clock_offset: float = attrs.field(default=0.0, alias="clock_offset")
    _timestamp_format: TimestampFormat = attrs.field(default="Z", alias="timestamp_format")
    log_size: int = 10_000
    clock: SimClock = attrs.field(init=False)
    api_key: str = attrs.field(init=False)
    organization_id: str = attrs.field(init=False)
    _state: SimState = attrs.field(init=False)
    _runner: web.AppRunner | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self.clock = SimClock(speed=self._speed)
        wall = WallClock(self._clock_offset, self._timestamp_format)
        lifecycle = Lifecycle(
            pending_seconds=self._pending_seconds,
            training_seconds=self._training_seconds,
            failure_rate=self._failure_rate,
        )
        store = Store(
            seed=self.seed,
            now=self.clock.now,
            lifecycle=lifecycle,
            use_cases_per_org=self._use_cases,
            base_models_per_use_case=self._base_models_per_use_case,
            stamp=wall.created_at,
        )
        plan = FaultPlan(random.Random(f"happyrobot-simulator:{self.seed}:faults"))
        plan.faults = self._initial_faults
        self._state = SimState(
            store=store,
            stats=StatsRecorder(log_size=self.log_size),
            plan=plan,
            wall=wall,
            extra_fields=self._extra_fields,
            optional_fields=self._optional_fields,
        )
        self.set_rate_limit(self._rate_limit_rps, self._rate_limit_burst)
        self.api_key = store.add_api_key()
        self.organization_id = store.organization_of(self.api_key) or ""

    def __repr__(self) -> str:
        where = self.base_url if self._runner is not None else "not running"
        return f"Simulator({where}, seed={self.seed}, models={len(self.models)})"

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start listening; `port` becomes the port actually bound."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._state.hangs.closing = False
        # A short grace period: requests still sleeping in a latency fault are cut off.
        runner = web.AppRunner(make_app(self._state), access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def close(self) -> None:
        """Stop listening and close every connection (idempotent); hung requests are dropped."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self._state.hangs.release()
            await runner.cleanup()

    @property
    def origin(self) -> str:
        """`http://host:port`, without the API prefix."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running; use `async with` or start()")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API root, e.g. `http://127.0.0.1:54321/api/v1`."""
        return f"{self.origin}{API_PREFIX}"

    @property
    def stats_url(self) -> str:
        """Where `GET` returns the counters as JSON (no auth)."""
        return f"{self.origin}/_simulator/stats"

    @property
    def use_case_ids(self) -> list[str]:
        """The seeded use cases of the default organization."""
        return self._state.store.use_case_ids(self.organization_id)

    def use_case_ids_of(self, organization_id: str) -> list[str]:
        """The seeded use cases of any organization."""
        return self._state.store.use_case_ids(organization_id)

    def base_model_ids(self, use_case_id: str) -> list[str]:
        """The seeded base models (active, trainable) of a use case, to clone from."""
        return self._state.store.base_model_ids(use_case_id)

    def add_api_key(self, organization_id: str | None = None, *, forbidden: bool = False) -> str:
        """Return a new key for `organization_id`; None makes a new organization (seeded too).

        With `forbidden` the key authenticates but every API request with it gets 403
        (the organization is not allowed to use the API).
        """
        return self._state.store.add_api_key(organization_id, forbidden=forbidden)

    def add_raw_item(self, use_case_id: str, item: dict[str, Any]) -> None:
        """Slip `item`, unvalidated JSON, among the use case's models, after the existing ones.

        Every key of the organization owning the use case sees it as-is in the list
        (whatever the status/trainable filters), and `GET /models/{id}` returns it
        as-is if it has a 24-character string "id". KeyError for an unknown use case;
        TypeError if `item` is not JSON-serializable.
        """
        self._state.store.add_raw_item(use_case_id, item)

    def organization_of(self, api_key: str) -> str | None:
        """Return the organization of an API key, or None if unknown."""
        return self._state.store.organization_of(api_key)

    def get_model(self, model_id: str) -> SimModel:
        """Return the server's truth about a model, any organization (KeyError if unknown)."""
        return self._state.store.record(model_id).view(self.clock.now())

    @property
    def models(self) -> list[SimModel]:
        """Every model (base models included), in creation order."""
        now = self.clock.now()
        return [record.view(now) for record in self._state.store.all()]

    def set_status(self, model_id: str, status: str | None) -> None:
        """Pin a model's status to any string (even outside the contract); None unpins."""
        self._state.store.record(model_id).pinned_status = status

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The active faults; assign a new list to change them at runtime."""
        return self._state.plan.faults

    @faults.setter
    def faults(self, faults: Iterable[Fault]) -> None:
        self._state.plan.faults = faults

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """Replace the active faults."""
        self._state.plan.faults = faults

    def set_rate_limit(self, rps: float | None, burst: float | None = None) -> None:
        """Limit all API requests to `rps` per second (burst default: max(1, rps)); None: off."""
        bucket = None if rps is None else TokenBucket(rps, burst or max(1.0, rps))
        self._state.bucket = bucket

    extra_fields = _Live[bool](
        "extra_fields", "Whether models carry the newer revision's extra fields."
    )
    optional_fields = _Live[OptionalFields](
        "optional_fields",
        '"present", "omitted" (only required keys) or "null" (nullable ids set to null).',
    )
    clock_offset = _Live[float](
        "wall.offset", "Seconds the server's wall clock is ahead of real UTC (negative: behind)."
    )
    timestamp_format = _Live[TimestampFormat](
        "wall.timestamp_format",
        'How `created_at` is spelled from now on: "Z", "z", "+00:00" or "fraction".',
    )

    @property
    def stats(self) -> SimulatorStats:
        """A snapshot of the counters since the last reset."""
        return self._state.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log (models are kept)."""
        self._state.stats.reset()
