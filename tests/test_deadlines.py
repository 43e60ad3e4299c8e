"""Whole-request deadlines: shared timers that behave like `asyncio.timeout`, end to end too."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from conftest import client_for, create_args, models_named, wait_until

import happyrobot_async as hr
from happyrobot_async._deadlines import TICK, Deadlines
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

# -- the timers alone, on a real event loop ---------------------------------------------------


async def test_a_deadline_past_its_time_raises_timeout_error_within_a_tick() -> None:
    """Work still running at its deadline is stopped with TimeoutError, at most a tick late."""
    started = time.monotonic()
    with pytest.raises(TimeoutError), Deadlines().after(0.05):
        await asyncio.sleep(5)
    assert 0.05 <= time.monotonic() - started < 0.05 + TICK + 0.1


async def test_work_done_in_time_leaves_no_cancellation_behind() -> None:
    """Leaving in time: the value comes back, the task is not cancelling, and later awaits
    (past the old deadline) run undisturbed."""
    deadlines = Deadlines()
    with deadlines.after(0.03):
        await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.03 + 2 * TICK)  # the shared timer fires meanwhile: nobody is due


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    """A task cancelled by its owner while inside a deadline gets CancelledError, not
    TimeoutError, even when the deadline expires at the same time."""

    async def request(deadlines: Deadlines) -> None:
        with deadlines.after(1):
            await asyncio.sleep(5)

    for expire_too in (False, True):
        deadlines = Deadlines()
        task = asyncio.create_task(request(deadlines))
        await asyncio.sleep(0.01)
        if expire_too:  # the deadline's timer and the owner's cancel in one loop turn
            next(iter(deadlines._ticks.values()))._expire()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_outer_timeout_is_the_outers() -> None:
    """Inside the caller's own `asyncio.timeout`, the caller's shorter limit wins and is the
    caller's TimeoutError; the request's longer deadline never fires afterwards."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.03) as outer:
            with Deadlines().after(0.5):
                await asyncio.sleep(5)
    assert outer.expired()
    await asyncio.sleep(0)  # no cancellation left pending on this task


async def test_thousands_of_deadlines_share_few_timers_and_all_fire() -> None:
    """2,000 requests started together time out together: each one, on one timer per tick
    their start spanned (a handful, not 2,000)."""
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    started = loop.time()

    async def request() -> str:
        try:
            with deadlines.after(0.1):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "finished"

    tasks = [asyncio.create_task(request()) for _ in range(2000)]
    await asyncio.sleep(0)
    spanned = math.ceil((loop.time() - started) / TICK) + 1
    timers = len(loop._scheduled) - before - 2000  # type: ignore[attr-defined]  # less the sleeps
    assert timers <= spanned < 50
    assert await asyncio.gather(*tasks) == ["timed out"] * 2000


async def test_an_astronomical_timeout_is_a_long_one() -> None:
    """A timeout of 1e308 s (allowed: it is finite) neither overflows nor fires."""
    with Deadlines().after(1e308):
        await asyncio.sleep(0.01)


def test_a_deadline_outside_a_task_is_refused() -> None:
    """Entering a deadline in a plain loop callback (no task) is a clear RuntimeError."""
    loop = asyncio.new_event_loop()
    errors: list[BaseException | None] = []
    loop.set_exception_handler(lambda _, context: errors.append(context.get("exception")))
    try:
        deadline = Deadlines().after(1)

        def enter() -> None:
            with deadline:
                pass

        loop.call_soon(enter)
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        loop.close()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "needs a task" in str(errors[0])


# -- over HTTP: the simulator's `stall` fault --------------------------------------------------


async def test_a_body_that_stalls_half_way_times_out(simulator_factory: SimulatorFactory) -> None:
    """Status and headers arrive, then half the body and nothing more: the whole-request
    timeout still ends the get, as APITimeoutError, with the request marked sent."""
    sim = await simulator_factory(faults=[Fault("stall", route="get")])
    model_id = sim.base_model_ids(sim.use_case_ids[0])[0]
    started = time.monotonic()
    async with client_for(sim, timeout=0.2, max_retries=0, retry_policy=None) as client:
        with pytest.raises(hr.APITimeoutError, match="timed out waiting") as caught:
            await asyncio.wait_for(client.models.get(model_id), 10)
    assert 0.2 <= time.monotonic() - started < 2
    assert caught.value.request_sent
    await wait_until(lambda: sim.stats.count("get", "stall") == 1)  # counted once it ends


async def test_a_per_call_timeout_ends_a_stalled_body(simulator_factory: SimulatorFactory) -> None:
    """get(timeout=) replaces the client's long timeout for that call alone."""
    sim = await simulator_factory(faults=[Fault("stall", route="get", rate=1.0)])
    model_id = sim.base_model_ids(sim.use_case_ids[0])[0]
    async with client_for(sim, timeout=60, max_retries=0, retry_policy=None) as client:
        with pytest.raises(hr.APITimeoutError):
            await asyncio.wait_for(client.models.get(model_id, timeout=0.1), 10)


async def test_a_create_whose_answer_stalls_is_found_not_resent(simulator: Simulator) -> None:
    """The model is stored, then its answer stalls until the client times out: the create
    looks for it and returns it, and no second model is made."""
    simulator.faults = [Fault("stall", route="create")]
    async with client_for(simulator, timeout=0.3) as client:
        task = asyncio.create_task(client.models.create(**create_args(simulator, "stalled")))
        await asyncio.sleep(0.1)
        simulator.faults = []  # the lookups that follow are answered
        model = await asyncio.wait_for(task, 30)
    assert model.name == "stalled"
    assert models_named(simulator, "stalled") == 1
    await wait_until(lambda: simulator.stats.count("create", "stall") == 1)


async def test_a_cancelled_request_is_cancelled_not_timed_out(
    simulator_factory: SimulatorFactory,
) -> None:
    """Cancelling a get that hangs gives the caller CancelledError (not a timeout), and the
    client keeps working afterwards."""
    sim = await simulator_factory()
    model_id = sim.base_model_ids(sim.use_case_ids[0])[0]
    async with client_for(sim, timeout=0.5) as client:
        sim.faults = [Fault("hang", route="get")]
        task = asyncio.create_task(client.models.get(model_id))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sim.faults = []
        assert (await client.models.get(model_id)).id == model_id
