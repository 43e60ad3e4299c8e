"""Fault injection: every kind fires at its configured rate and looks like the real thing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from happyrobot_async.testing import Fault, Simulator

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Api, Reply

    from happyrobot_async.testing.pytest_plugin import SimulatorFactory

REQUESTS = 400
RATE = 0.3
TOLERANCE = 0.07


def _is_429(reply: Reply) -> bool:
    headers = {k.lower(): v for k, v in reply.headers.items()}
    return (
        reply.status == 429
        and headers["retry-after"] == "2"
        and headers["retry-after-ms"] == "1500"
        and bool(reply.body["message"])
    )


def _is_html_503(reply: Reply) -> bool:
    return (
        reply.status == 503
        and reply.headers["Content-Type"].startswith("text/html")
        and "Retry-After" not in reply.headers
        and "<html>" in reply.text
    )


# kind -> (fault, what the client sees when it fires)
OBSERVED: dict[str, tuple[Fault, Callable[[Any], bool]]] = {
    "rate_limit": (Fault("rate_limit", RATE, "create", retry_after=1.5), _is_429),
    "server_error": (Fault("server_error", RATE, "create", status=503, html=True), _is_html_503),
    "drop": (
        Fault("drop", RATE, "create"),
        lambda r: isinstance(r, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError),
    ),
    "truncate": (
        Fault("truncate", RATE, "create"),
        lambda r: isinstance(r, aiohttp.ClientPayloadError),
    ),
    "redirect": (
        Fault("redirect", RATE, "create", location="http://127.0.0.2:9/elsewhere"),
        lambda r: r.status == 307 and r.headers["Location"] == "http://127.0.0.2:9/elsewhere",
    ),
    "malformed_json": (
        Fault("malformed_json", RATE, "create"),
        lambda r: r.status == 200 and r.body is None,
    ),
    "wrong_shape": (Fault("wrong_shape", RATE, "create"), lambda r: r.body == {"id": 5}),
}


async def _gather(count: int, call: Callable[[], Any], concurrency: int = 16) -> list[Any]:
    """Run `call` `count` times, `concurrency` at a time; exceptions are returned, not raised."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Any:
        async with gate:
            try:
                return await call()
            except aiohttp.ClientError as error:
                return error

    return await asyncio.gather(*(one() for _ in range(count)))


@pytest.mark.parametrize("kind", sorted(OBSERVED))
async def test_fault_fires_at_its_rate(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api], kind: str
) -> None:
    """Each fault kind is seen by the client on about `rate` of the requests, and counted."""
    fault, seen = OBSERVED[kind]
    sim = await simulator_factory(faults=[fault])
    api = make_api(sim)
    # POST, not GET: aiohttp silently resends an idempotent request once when its connection drops.
    results = await _gather(REQUESTS, lambda: api.create())
    hits = sum(1 for r in results if seen(r))
    assert abs(hits / REQUESTS - RATE) < TOLERANCE
    assert sim.stats.faults == {kind: hits}
    assert (await api.list()).status == 200  # other routes are untouched


async def test_latency_delays_by_its_rate(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """A latency fault delays about `rate` of the requests by at least `delay`."""
    sim = await simulator_factory(faults=[Fault("latency", RATE, delay=0.01)])
    api = make_api(sim)
    delayed = 0
    for _ in range(200):
        started = time.monotonic()
        await api.list()
        delayed += time.monotonic() - started >= 0.01
    assert abs(delayed / 200 - RATE) < TOLERANCE
    assert abs(sim.stats.faults["latency"] - delayed) <= 3


@pytest.mark.parametrize("then", ["drop", 500, 504])
async def test_commit_then_fail_stores_the_model(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api], then: Any
) -> None:
    """commit_then_fail stores the model but the client sees a failure; a resend duplicates."""
    sim = await simulator_factory(faults=[Fault("commit_then_fail", then=then)])
    api = make_api(sim)
    try:
        reply = await api.create(name="once")
        assert reply.status == then
    except aiohttp.ServerDisconnectedError:
        assert then == "drop"
    stored = [m for m in sim.models if m.name == "once"]
    assert len(stored) == 1
    sim.faults = []
    assert (await api.create(name="once")).status == 200
    stats = sim.stats
    assert stats.duplicates == 1
    assert stats.models_created == 2
    assert stats.faults == {"commit_then_fail": 1}


async def test_commit_then_fail_rate_counts_models(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """Every create is stored, whether or not its response was lost."""
    sim = await simulator_factory(faults=[Fault("commit_then_fail", RATE, then=500)])
    api = make_api(sim)
    results = await _gather(200, lambda: api.create())
    failed = sum(1 for r in results if r.status == 500)
    assert abs(failed / 200 - RATE) < 0.1
    assert sim.stats.models_created == 200


async def test_truncated_create_is_stored(simulator: Simulator, api: Api) -> None:
    """A create whose response is cut off has still created the model."""
    simulator.set_faults([Fault("truncate", route="create")])
    with pytest.raises(aiohttp.ClientPayloadError):
        await api.create(name="cut")
    assert [m.name for m in simulator.models if not m.is_base] == ["cut"]


@pytest.mark.parametrize("kind", ["drop", "server_error", "rate_limit", "redirect"])
async def test_faults_before_handling_store_nothing(
    simulator: Simulator, api: Api, kind: Any
) -> None:
    """A create refused by a fault before handling stores no model."""
    simulator.faults = [Fault(kind, route="create")]
    with contextlib.suppress(aiohttp.ClientError):
        await api.create()
    assert simulator.stats.models_created == 0
    assert all(m.is_base for m in simulator.models)


async def test_server_error_with_retry_after(simulator: Simulator, api: Api) -> None:
    """A JSON 503 can carry Retry-After."""
    simulator.faults = [Fault("server_error", status=503, retry_after=3)]
    reply = await api.list()
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "3"
    assert reply.body["message"]


async def test_wrong_shape_on_list_is_not_a_list(simulator: Simulator, api: Api) -> None:
    """wrong_shape on the list answers an object where an array is expected."""
    simulator.faults = [Fault("wrong_shape", route="list")]
    assert isinstance((await api.list()).body, dict)


async def test_default_redirect_goes_to_another_origin(simulator: Simulator, api: Api) -> None:
    """By default a redirect points at the same path on http://127.0.0.2:9."""
    simulator.faults = [Fault("redirect")]
    reply = await api.list(status="active")
    assert reply.headers["Location"] == "http://127.0.0.2:9/api/v1/models?status=active"


async def test_faults_only_hit_their_route(simulator: Simulator, api: Api) -> None:
    """A fault bound to a route leaves the other routes alone."""
    simulator.faults = [Fault("server_error", route="create")]
    assert (await api.list()).status == 200
    assert (await api.create()).status == 500


async def test_server_rate_limit(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """Beyond rate_limit_rps the server answers 429 with the wait until a token is free."""
    sim = await simulator_factory(rate_limit_rps=10.0)
    api = make_api(sim)
    replies = [await api.list() for _ in range(15)]
    limited = [r for r in replies if r.status == 429]
    assert [r.status for r in replies[:10]] == [200] * 10
    assert len(limited) >= 4
    wait_ms = int(limited[-1].headers["retry-after-ms"])
    assert 0 < wait_ms <= 100
    assert limited[-1].headers["Retry-After"] == "1"
    await asyncio.sleep(wait_ms / 1000)
    assert (await api.list()).status == 200
    assert sim.stats.faults["server_rate_limit"] == len(limited)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "explode"},
        {"kind": "drop", "rate": 1.5},
        {"kind": "drop", "route": "delete"},
        {"kind": "server_error", "status": 501},
        {"kind": "commit_then_fail", "then": 503},
        {"kind": "commit_then_fail", "route": "get"},
    ],
)
def test_bad_faults_are_refused(kwargs: dict[str, Any]) -> None:
    """A fault with an unknown kind, route, rate or parameter fails at construction."""
    with pytest.raises(ValueError):
        Fault(**kwargs)


async def test_fault_decisions_are_seeded(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """The same seed makes the same requests fail."""
    outcomes = []
    for _ in range(2):
        sim = await simulator_factory(seed=3, faults=[Fault("server_error", 0.5)])
        api = make_api(sim)
        outcomes.append([(await api.list()).status for _ in range(30)])
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 500}
