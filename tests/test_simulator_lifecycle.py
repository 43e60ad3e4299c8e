"""The model lifecycle: order, timing on the simulated clock, outcomes, seeding, pinning."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from happyrobot_async.testing import SimClock, Simulator

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Api

    from happyrobot_async.testing.pytest_plugin import SimulatorFactory

ORDER = ["pending", "training", "active", "failed"]


async def test_lifecycle_moves_forward_to_a_terminal_status(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """Stepping the clock walks a model pending → training → terminal, never backwards."""
    sim = await simulator_factory(speed=0.0, failure_rate=0.5)
    api = make_api(sim)
    model_id = (await api.create()).body["id"]
    seen = []
    for _ in range(30):
        seen.append((await api.get(model_id)).body["status"])
        sim.clock.advance(0.5)
    ranks = [min(ORDER.index(s), 2) for s in seen]
    assert ranks == sorted(ranks)
    assert seen[0] == "pending"
    assert "training" in seen
    assert seen[-1] == sim.get_model(model_id).outcome


async def test_status_boundaries_follow_the_drawn_durations(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """The status changes exactly when the model's pending and training times have elapsed."""
    sim = await simulator_factory(speed=0.0, pending_seconds=(2, 2), training_seconds=(5, 5))
    api = make_api(sim)
    model_id = (await api.create()).body["id"]
    for step, expected in [(1.9, "pending"), (0.2, "training"), (4.7, "training"), (0.2, None)]:
        sim.clock.advance(step)
        status = (await api.get(model_id)).body["status"]
        assert status == (expected or sim.get_model(model_id).outcome)


@pytest.mark.parametrize(("rate", "expected"), [(0.0, {"active"}), (1.0, {"failed"})])
async def test_failure_rate_extremes(
    simulator_factory: SimulatorFactory,
    make_api: Callable[..., Api],
    rate: float,
    expected: set[str],
) -> None:
    """failure_rate 0 always succeeds, 1 always fails."""
    sim = await simulator_factory(speed=0.0, failure_rate=rate)
    api = make_api(sim)
    for n in range(10):
        await api.create(name=f"m{n}")
    sim.clock.advance(60)
    assert {m["status"] for m in (await api.list(trainable="false")).body} == expected


async def test_failure_rate_is_respected(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """About failure_rate of the models end failed."""
    sim = await simulator_factory(failure_rate=0.3)
    api = make_api(sim)
    for n in range(200):
        await api.create(name=f"m{n}")
    failed = sum(m.outcome == "failed" for m in sim.models if not m.is_base)
    assert 40 <= failed <= 80


async def test_default_lifecycle_is_short(simulator: Simulator, api: Api) -> None:
    """By default a model pends 1-3 s and trains 3-10 s, failing about 10% of the time."""
    await api.create()
    model = simulator.models[-1]
    assert 1 <= model.pending_seconds <= 3
    assert 3 <= model.training_seconds <= 10


async def test_speed_makes_time_pass_faster(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """At a high speed a model's 4-13 simulated seconds pass within real milliseconds."""
    sim = await simulator_factory(speed=10_000.0)
    api = make_api(sim)
    model_id = (await api.create()).body["id"]
    started = asyncio.get_running_loop().time()
    while (await api.get(model_id)).body["status"] not in {"active", "failed"}:
        assert asyncio.get_running_loop().time() - started < 1.0, "still training after 1 s"


async def test_same_seed_same_ids_and_fates(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """Two simulators with the same seed give the same ids, keys, durations and outcomes."""
    runs = []
    for _ in range(2):
        sim = await simulator_factory(seed=7)
        api = make_api(sim)
        for n in range(20):
            await api.create(name=f"m{n}")
        runs.append(
            (
                sim.api_key,
                sim.organization_id,
                [(m.id, m.outcome, m.pending_seconds, m.training_seconds) for m in sim.models],
            )
        )
    assert runs[0] == runs[1]
    other = await simulator_factory(seed=8)
    assert other.use_case_ids != Simulator(seed=7).use_case_ids


async def test_set_status_pins_and_unpins(simulator: Simulator, api: Api) -> None:
    """set_status pins any string (even outside the contract); None restores the lifecycle."""
    model_id = (await api.create()).body["id"]
    simulator.set_status(model_id, "queued")
    assert (await api.get(model_id)).body["status"] == "queued"
    assert "queued" in {m["status"] for m in (await api.list()).body}
    simulator.set_status(model_id, "failed")
    assert (await api.list(status="failed")).body[0]["id"] == model_id
    simulator.set_status(model_id, None)
    assert (await api.get(model_id)).body["status"] == "pending"


def test_clock_advance_and_speed() -> None:
    """advance() steps the clock; changing speed keeps the time reached so far."""
    clock = SimClock(speed=0.0)
    clock.advance(5)
    assert clock.now() == 5
    clock.speed = 2.0
    assert clock.now() >= 5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
