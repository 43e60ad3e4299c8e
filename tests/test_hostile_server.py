"""Promises kept outside the happy path: rate limits, skewed clocks, partial data, odd bodies."""

from __future__ import annotations

import asyncio

import pytest
from conftest import client_for, create_args, models_named

import happyrobot_async as hr
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


def jobs_for(sim: Simulator, count: int) -> list[hr.TrainingJob]:
    return [
        hr.TrainingJob(**create_args(sim, f"job-{i:03d}", i % len(sim.use_case_ids)))
        for i in range(count)
    ]


async def test_rate_limited_batch_creates_every_job(simulator_factory: SimulatorFactory) -> None:
    """A 60-job batch against a 10 req/s server, default options: all created, once, few 429s."""
    sim = await simulator_factory(
        seed=5, rate_limit_rps=10.0, speed=50.0, pending_seconds=(1, 2), training_seconds=(1, 2)
    )
    async with hr.HappyRobotClient(sim.api_key, sim.base_url) as client:
        report = await hr.run_batch(client, jobs_for(sim, 60), poll_interval=0.5)
    assert [result.error for result in report.results] == [None] * 60
    assert sim.stats.models_created == 60 and sim.stats.duplicates == 0
    log = sim.stats.log
    settled = [entry for entry in log if entry.time >= log[0].time + 3.0]
    assert settled, "the batch should take longer than its first seconds"
    throttled = sum(entry.status == "429" for entry in settled)
    assert throttled <= 0.1 * len(settled)


async def test_steady_fault_rate_never_drains_the_retry_budget(
    simulator_factory: SimulatorFactory,
) -> None:
    """1,000 creates with one POST in five failing (500, nothing stored): none given up on."""
    faults = [Fault("server_error", rate=0.2, route="create", status=500)]
    sim = await simulator_factory(seed=11, faults=faults)
    slots = asyncio.Semaphore(32)

    async def create(client: hr.HappyRobotClient, index: int) -> hr.Model:
        async with slots:
            return await client.models.create(**create_args(sim, f"steady-{index:04d}", index % 3))

    # the default budget; max_retries=8 so that no create meets 9 faults in a row by chance
    # (at max_retries=4, 0.2^5: about one create in 3,000 would, budget or not)
    policy = hr.RetryPolicy(max_retries=8, initial_delay=0.001, max_delay=0.02)
    async with client_for(sim, retry_policy=policy) as client:
        models = await asyncio.gather(*(create(client, i) for i in range(1000)))
    assert len({model.id for model in models}) == 1000
    assert sim.stats.faults["server_error"] > 150
    assert sim.stats.models_created == 1000 and sim.stats.duplicates == 0


@pytest.mark.parametrize("offset", [-15.0, -30.0, -120.0, -3600.0, 3600.0])
async def test_skewed_server_clock_never_duplicates(
    simulator_factory: SimulatorFactory, offset: float
) -> None:
    """A commit-then-fail create against a server clock far off ours is adopted, not resent."""
    sim = await simulator_factory(clock_offset=offset)
    async with client_for(sim) as client:
        await client.models.list()  # the client learns the server's clock from its Date
        sim.faults = [Fault("commit_then_fail", route="create", then=500)]
        model = await client.models.create(**create_args(sim, "skewed"))
    assert models_named(sim, "skewed") == 1
    assert sim.get_model(model.id).name == "skewed"


async def test_skewed_clock_learned_from_the_lookup_itself(
    simulator_factory: SimulatorFactory,
) -> None:
    """A fresh client whose first request is the failing create still reconciles in server time."""
    sim = await simulator_factory(
        clock_offset=-120.0, faults=[Fault("commit_then_fail", route="create", then="drop")]
    )
    async with client_for(sim) as client:
        await client.models.create(**create_args(sim, "first-request"))
    assert models_named(sim, "first-request") == 1


async def test_an_identical_older_model_is_not_adopted(simulator_factory: SimulatorFactory) -> None:
    """An identical model made 3 s (server time) before this create began is never taken."""
    sim = await simulator_factory()
    async with client_for(sim) as other:  # another client: its model is not claimed by ours
        older = await other.models.create(**create_args(sim, "twin"))
    # really 3 s later (a clock step instead would look, to the client, like a server whose
    # clock jumped mid-create, where taking the earlier window is the safe side)
    await asyncio.sleep(3.0)
    async with client_for(sim) as client:
        await client.models.list()  # learns the server's clock
        sim.faults = [Fault("commit_then_fail", route="create", then=504)]
        mine = await client.models.create(**create_args(sim, "twin"))
    assert mine.id != older.id
    assert models_named(sim, "twin") == 2  # the older one, and exactly one of ours


async def test_omitted_fields_single_candidate_is_adopted(
    simulator_factory: SimulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With from_model_id and sample ids left out, one candidate is adopted (partial evidence)."""
    sim = await simulator_factory(optional_fields="omitted")
    async with client_for(sim) as client:
        sim.faults = [Fault("commit_then_fail", route="create", then="drop")]
        await client.models.create(**create_args(sim, "partial"))
    assert models_named(sim, "partial") == 1
    assert "partial evidence" in caplog.text


async def test_omitted_fields_several_candidates_are_ambiguous(simulator: Simulator) -> None:
    """Two models whose omitted fields cannot tell them apart: AmbiguousCreateError, no resend."""
    simulator.optional_fields = "omitted"
    args = create_args(simulator, "lookalike")
    async with client_for(simulator) as other:  # another process, say: not claimed by ours
        # made a moment before: within the reconcile tolerance, so both are candidates
        await other.models.create(**{**args, "train_sample_ids": ["other"]})
    async with client_for(simulator) as client:
        simulator.faults = [Fault("commit_then_fail", route="create", then=500)]
        with pytest.raises(hr.AmbiguousCreateError):
            await client.models.create(**args)
    assert models_named(simulator, "lookalike") == 2


async def test_unreadable_success_is_reconciled(simulator_factory: SimulatorFactory) -> None:
    """A 200 whose body cannot be read is ambiguous: the stored model is adopted, not resent."""
    sim = await simulator_factory(faults=[Fault("malformed_json", route="create")])
    async with client_for(sim) as client:
        model = await client.models.create(**create_args(sim, "garbled"))
    assert models_named(sim, "garbled") == 1
    assert model.name == "garbled"


async def test_poison_item_does_not_break_reconcile(simulator: Simulator) -> None:
    """A foreign item that does not decode in the use case's list does not stop a reconcile."""
    use_case_id = simulator.use_case_ids[0]
    poison = {"id": "f" * 24, "name": "foreign", "created_at": "soon", "status": "active"}
    simulator.add_raw_item(use_case_id, poison)
    async with client_for(simulator) as client:
        simulator.faults = [Fault("commit_then_fail", route="create", then="drop")]
        await client.models.create(**create_args(simulator, "beside-poison"))
        assert "f" * 24 not in {m.id for m in await client.models.list(use_case_id=use_case_id)}
    assert models_named(simulator, "beside-poison") == 1
