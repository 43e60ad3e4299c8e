"""The simulator's counters, in Python and over HTTP."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
import pytest

from happyrobot_async.testing import Fault, Simulator

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Api

    from happyrobot_async.testing.pytest_plugin import SimulatorFactory


async def test_requests_are_counted_per_route_and_status(simulator: Simulator, api: Api) -> None:
    """Each request is counted under its route and status."""
    created = (await api.create()).body
    await api.create(name="")
    await api.get(created["id"])
    await api.get("0" * 24)
    await api.list()
    await api.request("GET", "/models", auth=False)
    stats = simulator.stats
    assert stats.requests == {
        "create": {"200": 1, "422": 1},
        "get": {"200": 1, "404": 1},
        "list": {"200": 1, "401": 1},
    }
    assert stats.total_requests == 6
    assert stats.count("create") == 2
    assert stats.count("get", 404) == 1


async def test_models_by_name_and_duplicates(simulator: Simulator, api: Api) -> None:
    """Models are counted per (organization, use case, name); a repeated name is a duplicate."""
    await api.create(name="a")
    await api.create(name="a")
    await api.create(name="a")
    await api.create(name="b")
    await api.create(use_case=1, name="a")
    stats = simulator.stats
    org, (uc0, uc1, _) = simulator.organization_id, simulator.use_case_ids
    assert stats.models_by_name == {(org, uc0, "a"): 3, (org, uc0, "b"): 1, (org, uc1, "a"): 1}
    assert stats.duplicates == 1
    assert stats.models_created == 5


async def test_max_in_flight_counts_concurrent_requests(simulator: Simulator, api: Api) -> None:
    """max_in_flight is the most API requests handled at once."""
    simulator.faults = [Fault("latency", delay=0.2)]
    await asyncio.gather(*(api.list() for _ in range(5)))
    stats = simulator.stats
    assert stats.max_in_flight == 5
    assert stats.in_flight == 0
    assert stats.faults == {"latency": 5}


async def test_request_log_records_each_attempt(simulator: Simulator, api: Api) -> None:
    """The log keeps method, route, path, status, time, fault and whether auth was sent."""
    simulator.faults = [Fault("server_error", route="create", status=502)]
    await api.create()
    await api.request("GET", "/models?status=active", auth=False)
    first, second = simulator.stats.log
    assert (first.method, first.route, first.path, first.status) == (
        "POST",
        "create",
        "/api/v1/models",
        "502",
    )
    assert (first.fault, first.has_auth) == ("server_error", True)
    assert (second.route, second.status, second.fault, second.has_auth) == (
        "list",
        "401",
        None,
        False,
    )
    assert second.path == "/api/v1/models?status=active"
    assert second.time >= first.time


async def test_dropped_connections_are_counted(simulator: Simulator, api: Api) -> None:
    """A dropped connection is counted with the status "drop"."""
    simulator.faults = [Fault("drop", route="create")]
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.create()
    assert simulator.stats.requests == {"create": {"drop": 1}}


async def test_log_is_bounded(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """The log keeps only the last log_size requests."""
    sim = await simulator_factory(log_size=3)
    api = make_api(sim)
    for _ in range(5):
        await api.list()
    stats = sim.stats
    assert len(stats.log) == 3
    assert stats.total_requests == 5


async def test_reset_stats(simulator: Simulator, api: Api) -> None:
    """reset_stats zeroes the counters but keeps the models."""
    await api.create()
    simulator.reset_stats()
    stats = simulator.stats
    assert (stats.total_requests, stats.models_created, stats.requests, stats.log) == (0, 0, {}, ())
    assert len(simulator.models) == 7


async def test_stats_endpoint(simulator: Simulator, api: Api) -> None:
    """GET /_simulator/stats returns the counters as JSON, without auth."""
    await api.create(name="a")
    await api.create(name="a")
    async with api.session.get(simulator.stats_url) as response:
        assert response.status == 200
        stats = await response.json()
    assert stats["requests"] == {"create": {"200": 2}}
    assert stats["total_requests"] == 2
    assert stats["models_created"] == 2
    assert stats["duplicates"] == 1
    assert stats["models_by_name"] == [
        {
            "organization_id": simulator.organization_id,
            "use_case_id": simulator.use_case_ids[0],
            "name": "a",
            "count": 2,
        }
    ]
    assert stats["max_in_flight"] == 1
    assert [entry["status"] for entry in stats["log"]] == ["200", "200"]
    assert simulator.stats.total_requests == 2  # the stats endpoint itself is not counted


async def test_reset_endpoint(simulator: Simulator, api: Api) -> None:
    """POST /_simulator/reset zeroes the counters from another process."""
    await api.list()
    async with api.session.post(f"{simulator.origin}/_simulator/reset") as response:
        assert response.status == 204
    assert simulator.stats.total_requests == 0
