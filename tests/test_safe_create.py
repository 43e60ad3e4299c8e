"""Creates under faults: retried when safe, reconciled when ambiguous, never duplicated."""

from __future__ import annotations

import asyncio
import random

import attrs
import pytest
from conftest import FAST, client_for, create_args, models_named, wait_until

import happyrobot_async as hr
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


async def test_never_sent_is_retried(simulator: Simulator) -> None:
    """A create that could not connect is resent once the server is back: one model."""
    url = simulator.base_url
    await simulator.close()
    policy = hr.RetryPolicy(max_retries=10, initial_delay=0.05, max_delay=0.1)
    async with hr.HappyRobotClient(simulator.api_key, url, retry_policy=policy) as client:
        task = asyncio.create_task(client.models.create(**create_args(simulator, "offline")))
        budget = client.retry_budget
        await wait_until(lambda: budget.failure_ratio > 0)  # an attempt failed
        assert not task.done()
        await simulator.start()
        model = await task
    assert simulator.base_url == url
    assert models_named(simulator, "offline") == 1
    assert simulator.stats.count("create") == 1
    assert simulator.stats.count("list") == 0
    assert model.name == "offline"


@pytest.mark.parametrize(
    "fault",
    [
        Fault("rate_limit", route="create", retry_after=0.01),
        Fault("server_error", route="create", status=503, retry_after=0.01),
    ],
    ids=["429", "503-retry-after"],
)
async def test_refused_is_retried_after_the_wait(
    simulator_factory: SimulatorFactory, fault: Fault
) -> None:
    """429 and 503-with-Retry-After are retried with no reconciling; one model per create."""
    sim = await simulator_factory(seed=1, faults=[attrs.evolve(fault, rate=0.5)])
    async with client_for(sim, retry_policy=hr.RetryPolicy(max_retries=20)) as client:
        for index in range(6):
            await client.models.create(**create_args(sim, f"refused-{index}"))
    refusals = sim.stats.faults[fault.kind]
    assert refusals > 0
    assert sim.stats.count("create") == 6 + refusals
    assert sim.stats.count("list") == 0
    assert all(models_named(sim, f"refused-{i}") == 1 for i in range(6))


@pytest.mark.parametrize(
    "fault",
    [
        Fault("commit_then_fail", route="create", then="drop"),
        Fault("commit_then_fail", route="create", then=500),
        Fault("commit_then_fail", route="create", then=504),
        Fault("truncate", route="create"),
    ],
    ids=["commit-drop", "commit-500", "commit-504", "truncate"],
)
async def test_ambiguous_stored_is_adopted(
    simulator_factory: SimulatorFactory, fault: Fault
) -> None:
    """A create stored but answered with a failure is found by reconciling, not sent again."""
    sim = await simulator_factory(faults=[fault])
    async with client_for(sim) as client:
        model = await client.models.create(**create_args(sim, "stored"))
    assert models_named(sim, "stored") == 1
    assert sim.stats.count("create") == 1
    assert sim.stats.count("list") >= 1
    assert model.id == sim.models[-1].id
    assert model.train_sample_ids == ("stored-train",)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("drop", route="create"),
        Fault("server_error", route="create", status=500),
        Fault("server_error", route="create", status=502, html=True),
        Fault("server_error", route="create", status=503),
        Fault("server_error", route="create", status=504),
    ],
    ids=["drop", "500", "502", "503", "504"],
)
async def test_ambiguous_not_stored_is_resent(
    simulator_factory: SimulatorFactory, fault: Fault
) -> None:
    """An ambiguous failure that stored nothing is reconciled, then resent: one model."""
    sim = await simulator_factory(seed=2, faults=[attrs.evolve(fault, rate=0.5)])
    async with client_for(sim, retry_policy=FAST) as client:
        for index in range(6):
            await client.models.create(**create_args(sim, f"resent-{index}"))
    assert sim.stats.faults.get(fault.kind, 0) > 0
    assert sim.stats.duplicates == 0
    assert all(models_named(sim, f"resent-{i}") == 1 for i in range(6))


async def test_still_ambiguous_raises_with_the_request(
    simulator_factory: SimulatorFactory,
) -> None:
    """When every attempt is ambiguous and nothing is found, AmbiguousCreateError carries it."""
    sim = await simulator_factory(faults=[Fault("server_error", route="create", status=504)])
    policy = hr.RetryPolicy(max_retries=2, initial_delay=0.001, reconcile_delay=0.01)
    async with client_for(sim, retry_policy=policy) as client:
        with pytest.raises(hr.AmbiguousCreateError) as info:
            await client.models.create(**create_args(sim, "lost-in-fog"))
    assert info.value.request.name == "lost-in-fog"
    assert info.value.attempts == 3
    assert isinstance(info.value.cause, hr.ServerError)
    assert sim.stats.count("create") == 3


async def test_unreachable_reconcile_raises_ambiguous(
    simulator_factory: SimulatorFactory,
) -> None:
    """If the list needed to reconcile fails too, the create is ambiguous, never resent."""
    sim = await simulator_factory(
        faults=[
            Fault("commit_then_fail", route="create", then=500),
            Fault("server_error", route="list", status=500),
        ]
    )
    async with client_for(sim) as client:
        with pytest.raises(hr.AmbiguousCreateError):
            await client.models.create(**create_args(sim, "blind"))
    assert sim.stats.count("create") == 1
    assert models_named(sim, "blind") == 1


async def test_fatal_is_raised_at_once(simulator: Simulator) -> None:
    """A 4xx other than 408/429 is raised after one attempt, with no reconciling."""
    async with client_for(simulator) as client:
        with pytest.raises(hr.BadRequestError):
            await client.models.create(**{**create_args(simulator, "x"), "from_model_id": "a" * 24})
    assert simulator.stats.count("create") == 1
    assert simulator.stats.count("list") == 0


async def test_older_model_with_same_name_is_not_adopted(simulator: Simulator) -> None:
    """A same-named model with other sample ids is not mistaken for ours."""
    async with client_for(simulator) as client:
        first = await client.models.create(**create_args(simulator, "twin"))
        simulator.faults = [Fault("commit_then_fail", route="create", then=500)]
        args = {**create_args(simulator, "twin"), "train_sample_ids": ["other"]}
        second = await client.models.create(**args)
    assert second.id != first.id
    assert second.train_sample_ids == ("other",)
    assert models_named(simulator, "twin") == 2


async def test_soak_thousand_creates_under_faults(simulator_factory: SimulatorFactory) -> None:
    """1,000 creates, 20 % of POSTs faulted: exactly 1,000 models, none lost, none twice."""
    create_faults = [
        Fault("commit_then_fail", rate=0.04, route="create", then="drop"),
        Fault("commit_then_fail", rate=0.02, route="create", then=500),
        Fault("drop", rate=0.03, route="create"),
        Fault("truncate", rate=0.02, route="create"),
        Fault("server_error", rate=0.02, route="create", status=500),
        Fault("server_error", rate=0.02, route="create", status=502, html=True),
        Fault("server_error", rate=0.01, route="create", status=503),
        Fault("server_error", rate=0.01, route="create", status=504),
        Fault("rate_limit", rate=0.03, route="create", retry_after=0.01),
    ]
    sim = await simulator_factory(seed=7, use_cases=4, faults=create_faults)
    policy = hr.RetryPolicy(
        max_retries=8, initial_delay=0.001, max_delay=0.05, reconcile_delay=0.01
    )
    names = [f"soak-{i:04d}" for i in range(1000)]
    use_case_of = {name: i % 4 for i, name in enumerate(names)}
    semaphore = asyncio.Semaphore(32)

    async def create(name: str) -> hr.Model:
        async with semaphore:
            return await client.models.create(**create_args(sim, name, use_case_of[name]))

    # random 429s say nothing of our rate: a high rate_limit keeps the limiter's floor high
    async with client_for(sim, retry_policy=policy, rate_limit=10_000) as client:
        models = await asyncio.gather(*(create(name) for name in names))
    stats = sim.stats
    faulted = sum(stats.faults.values())
    assert faulted > 150
    assert stats.models_created == 1000
    assert stats.duplicates == 0
    for name, model in zip(names, models, strict=True):
        assert model.name == name
        stored = sim.get_model(model.id)
        assert (stored.name, stored.use_case_id) == (name, sim.use_case_ids[use_case_of[name]])


async def test_concurrency_cap_is_never_exceeded(simulator_factory: SimulatorFactory) -> None:
    """With max_concurrency=K, the server never sees more than K requests at once."""
    sim = await simulator_factory(faults=[Fault("latency", delay=0.02)])
    async with client_for(sim, max_concurrency=5) as client:
        await asyncio.gather(
            *(client.models.create(**create_args(sim, f"cap-{i}")) for i in range(20)),
            *(client.models.list() for _ in range(20)),
        )
    assert sim.stats.max_in_flight == 5


async def test_rate_limit_adapts_to_server_limit(simulator_factory: SimulatorFactory) -> None:
    """Against a server limiting to 100 req/s, a burst all succeeds and 429s become rarer."""
    sim = await simulator_factory(rate_limit_rps=100.0, rate_limit_burst=5.0)
    policy = hr.RetryPolicy(max_retries=20, initial_delay=0.01, reconcile_delay=0.01)
    async with client_for(sim, retry_policy=policy, rate_limit=400.0) as client:
        calls = [client.models.create(**create_args(sim, f"rl-{i}")) for i in range(150)]
        calls += [client.models.list(use_case_id=sim.use_case_ids[0]) for _ in range(150)]
        random.Random(0).shuffle(calls)
        results = await asyncio.gather(*calls)
    assert len(results) == 300
    assert sim.stats.models_created == 150 and sim.stats.duplicates == 0
    statuses = [entry.status for entry in sim.stats.log]
    first, last = statuses[:100], statuses[-100:]
    assert first.count("429") > 2 * last.count("429")
