"""Reads retry over real HTTP against injected faults, and stop when they should."""

from __future__ import annotations

import socket
from typing import Any

import attrs
import pytest
from aiohttp import web

import happyrobot_async as hr
from happyrobot_async.testing import Fault
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

FAST = hr.RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.01)


def client_for(sim: Any, **options: Any) -> hr.HappyRobotClient:
    options.setdefault("retry_policy", FAST)
    return hr.HappyRobotClient(sim.api_key, sim.base_url, **options)


RETRYABLE = [
    Fault("server_error", status=500),
    Fault("server_error", status=502, html=True),
    Fault("server_error", status=503),
    Fault("server_error", status=504),
    Fault("rate_limit", retry_after=0.01),
    Fault("drop"),
    Fault("truncate"),
]


@pytest.mark.parametrize("fault", RETRYABLE, ids=lambda f: f"{f.kind}-{f.status}")
async def test_read_recovers_from_transient_fault(
    simulator_factory: SimulatorFactory, fault: Fault
) -> None:
    """A read that meets a retryable fault on half its attempts still succeeds."""
    sim = await simulator_factory(seed=3, faults=[attrs.evolve(fault, rate=0.5, route="list")])
    policy = hr.RetryPolicy(max_retries=20, initial_delay=0.001)
    # random 429s say nothing of our rate: keep the limiter (tested apart) out of the way
    async with client_for(sim, retry_policy=policy, rate_limit=10_000) as c:
        for _ in range(10):
            assert await c.models.list()
    assert sim.stats.faults.get(fault.kind, 0) > 0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("server_error", status=500), hr.ServerError),
        (Fault("server_error", status=502, html=True), hr.ServerError),
        (Fault("drop"), hr.APIConnectionError),
        (Fault("truncate"), hr.APIConnectionError),
    ],
    ids=lambda v: getattr(v, "kind", getattr(v, "__name__", "")),
)
async def test_read_gives_up_after_max_retries(
    simulator_factory: SimulatorFactory, fault: Fault, error: type[Exception]
) -> None:
    """With every attempt failing, max_retries=3 sends exactly 4 requests, then raises."""
    sim = await simulator_factory(faults=[fault])
    async with client_for(sim) as client:
        with pytest.raises(error):
            await client.models.list()
    assert sim.stats.count("list") == 4


async def test_refusals_are_bounded_by_time_not_retries(
    simulator_factory: SimulatorFactory,
) -> None:
    """429s do not use up max_retries; they are waited out until max_refused_wait, then raised."""
    sim = await simulator_factory(faults=[Fault("rate_limit", retry_after=0.02)])
    policy = hr.RetryPolicy(
        max_retries=1, max_refused_wait=0.3, initial_delay=0.001, max_delay=0.02
    )
    # a generous rate limit: the limiter halving it on each 429 still never paces us here
    async with client_for(sim, retry_policy=policy, rate_limit=10_000) as client:
        with pytest.raises(hr.RateLimitError):
            await client.models.list()
    # far more than max_retries + 1, yet no more than 0.3 s of waits of at least 0.02 s
    # allow (counted, not timed: a loaded machine may run each wait late, never early)
    assert 5 < sim.stats.count("list") <= 1 + 0.3 / 0.02


async def test_max_retries_zero_sends_once(simulator_factory: SimulatorFactory) -> None:
    """max_retries=0 disables retries: one request, the error raised as is."""
    sim = await simulator_factory(faults=[Fault("server_error", status=503)])
    async with hr.HappyRobotClient(sim.api_key, sim.base_url, max_retries=0) as client:
        with pytest.raises(hr.ServerError):
            await client.models.list()
    assert sim.stats.count("list") == 1


async def test_non_retryable_status_is_not_retried(simulator_factory: SimulatorFactory) -> None:
    """A 404 is raised after one request."""
    sim = await simulator_factory()
    async with client_for(sim) as client:
        with pytest.raises(hr.NotFoundError):
            await client.models.get("0" * 24)
    assert sim.stats.count("get") == 1


async def test_retry_after_is_obeyed(simulator_factory: SimulatorFactory) -> None:
    """After a 429 asking for 0.3 s, the next attempt arrives no sooner (server's timestamps)."""
    sim = await simulator_factory(faults=[Fault("rate_limit", rate=1.0, retry_after=0.3)])
    policy = hr.RetryPolicy(max_retries=1, max_refused_wait=0.5)
    async with client_for(sim, retry_policy=policy) as client:
        with pytest.raises(hr.RateLimitError) as info:
            await client.models.list()
    assert info.value.retry_after == pytest.approx(0.3)
    first, second = (entry.time for entry in sim.stats.log)
    assert second - first >= 0.29


async def test_retry_after_beyond_cap_raises_at_once(simulator_factory: SimulatorFactory) -> None:
    """A Retry-After longer than max_retry_after is raised as RateLimitError without waiting."""
    sim = await simulator_factory(faults=[Fault("rate_limit", retry_after=30.0)])
    policy = hr.RetryPolicy(max_retries=5, max_retry_after=1.0)
    async with client_for(sim, retry_policy=policy) as client:
        with pytest.raises(hr.RateLimitError) as info:
            await client.models.list()
    assert info.value.retry_after == 30.0
    assert sim.stats.count("list") == 1


async def test_retry_budget_stops_hammering(simulator_factory: SimulatorFactory) -> None:
    """Against a dead server, retries stop once failures fill the budget's window."""
    sim = await simulator_factory(faults=[Fault("server_error", status=500)])
    policy = hr.RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.002)
    async with client_for(sim, retry_policy=policy) as client:
        budget = client.retry_budget
        for _ in range(10):
            with pytest.raises(hr.ServerError):
                await client.models.list()
    # 4 attempts per call until min_outcomes (20) failures are in: 5 calls; then 1 each
    assert budget.exhausted
    assert sim.stats.count("list") == 5 * 4 + 5


async def test_redirect_not_followed_and_key_not_forwarded(
    simulator_factory: SimulatorFactory, unused_tcp_port: int
) -> None:
    """A 307 to another origin is an APIStatusError; the other origin never sees a request."""
    seen: list[str] = []

    async def catch(request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization", ""))
        return web.json_response([])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", catch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        target = f"http://127.0.0.1:{unused_tcp_port}/api/v1/models"
        sim = await simulator_factory(faults=[Fault("redirect", location=target)])
        async with client_for(sim) as client:
            with pytest.raises(hr.APIStatusError) as info:
                await client.models.list()
            with pytest.raises(hr.APIStatusError):
                await client.models.create(
                    use_case_id=sim.use_case_ids[0],
                    name="n",
                    from_model_id=sim.base_model_ids(sim.use_case_ids[0])[0],
                    train_sample_ids=["a"],
                    test_sample_ids=["b"],
                )
    finally:
        await runner.cleanup()
    assert info.value.status_code == 307
    assert seen == []


async def test_read_timeout(simulator_factory: SimulatorFactory) -> None:
    """A response slower than the timeout raises APITimeoutError (after the retries)."""
    sim = await simulator_factory(faults=[Fault("latency", delay=1.0)])
    policy = hr.RetryPolicy(max_retries=1, initial_delay=0.001)
    async with client_for(sim, timeout=0.1, retry_policy=policy) as client:
        with pytest.raises(hr.APITimeoutError) as info:
            await client.models.list()
    assert isinstance(info.value, hr.APIConnectionError)
    assert info.value.request_sent


async def test_connection_refused_is_marked_unsent() -> None:
    """Nobody listening: APIConnectionError saying the request was never sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = hr.RetryPolicy(max_retries=1, initial_delay=0.001)
    url = f"http://127.0.0.1:{port}/api/v1"
    async with hr.HappyRobotClient("key", url, retry_policy=policy) as client:
        with pytest.raises(hr.APIConnectionError) as info:
            await client.models.list()
    assert info.value.request_sent is False
