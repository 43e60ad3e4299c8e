"""Attacks on the shared-timer request deadlines (`_deadlines.py`) and the `stall` fault."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import FAST, client_for, create_args, models_named, wait_until

import happyrobot_async as hr
from happyrobot_async._deadlines import TICK
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

ROOT = Path(__file__).resolve().parent.parent


def first_model(sim: Simulator) -> str:
    """A seeded base model of the simulator's first use case."""
    return sim.base_model_ids(sim.use_case_ids[0])[0]


def live_timers(loop: asyncio.AbstractEventLoop) -> int:
    """How many timers the loop still has scheduled (not cancelled)."""
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


# -- the caller's own cancellation and timeouts around SDK calls -------------------------------


async def test_callers_shorter_asyncio_timeout_is_the_callers(simulator: Simulator) -> None:
    """The caller's own `asyncio.timeout` (shorter than the client's) ends a stalled get as
    a plain TimeoutError of the caller's, not an APITimeoutError, and nothing is retried."""
    simulator.faults = [Fault("stall", route="get")]
    async with client_for(simulator, timeout=5) as client:
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.1) as outer:
                await client.models.get(first_model(simulator))
        assert outer.expired()
        assert not isinstance(caught.value, hr.APITimeoutError)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
    await wait_until(lambda: simulator.stats.count("get", "stall") == 1)


async def test_outer_timeout_equal_to_the_clients_never_leaks_cancelled(
    simulator: Simulator,
) -> None:
    """An outer `asyncio.timeout` of the same length as the request's deadline (both may fire
    in one loop turn): the caller gets a TimeoutError, never a CancelledError, and the task
    is left uncancelled. Repeated to hit the same-tick case."""
    simulator.faults = [Fault("stall", route="get")]
    task = asyncio.current_task()
    assert task is not None
    async with client_for(simulator, timeout=0.05, max_retries=0, retry_policy=None) as client:
        for _ in range(20):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await client.models.get(first_model(simulator))
            assert task.cancelling() == 0
        await asyncio.sleep(0.05)  # no stray cancel arrives later


async def test_wait_for_around_a_call_is_the_callers(simulator: Simulator) -> None:
    """`asyncio.wait_for` shorter than the client timeout: TimeoutError, not APITimeoutError."""
    simulator.faults = [Fault("hang", route="get")]
    async with client_for(simulator, timeout=5) as client:
        with pytest.raises(TimeoutError) as caught:
            await asyncio.wait_for(client.models.get(first_model(simulator)), 0.1)
        assert not isinstance(caught.value, hr.APITimeoutError)


async def test_a_task_cancelled_and_not_uncancelled_still_gets_timeouts(
    simulator: Simulator,
) -> None:
    """A task that swallowed a cancellation (cancelling() stays 1) and calls the SDK after:
    its request's deadline still ends as APITimeoutError, not as a CancelledError."""
    simulator.faults = [Fault("stall", route="get")]

    async def careless() -> str:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed, never uncancelled
            await asyncio.sleep(5)
        async with client_for(simulator, timeout=0.1, max_retries=0, retry_policy=None) as client:
            try:
                await client.models.get(first_model(simulator))
            except hr.APITimeoutError:
                return "timed out"
        return "answered"

    task = asyncio.create_task(careless())
    await asyncio.sleep(0.01)
    task.cancel()
    assert await asyncio.wait_for(task, 5) == "timed out"


async def test_a_task_uncancelled_and_reused_times_out_cleanly(simulator: Simulator) -> None:
    """A task cancelled, uncancelled (as well-behaved code does) and reused for two stalled
    gets: two APITimeoutErrors, and the task ends not cancelling."""
    simulator.faults = [Fault("stall", route="get")]

    async def reused() -> int:
        task = asyncio.current_task()
        assert task is not None
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            task.uncancel()
        timeouts = 0
        async with client_for(simulator, timeout=0.05, max_retries=0, retry_policy=None) as client:
            for _ in range(2):
                with pytest.raises(hr.APITimeoutError):
                    await client.models.get(first_model(simulator))
                timeouts += 1
        assert task.cancelling() == 0
        return timeouts

    task = asyncio.create_task(reused())
    await asyncio.sleep(0.01)
    task.cancel()
    assert await asyncio.wait_for(task, 5) == 2


async def test_a_cancel_in_the_same_turn_as_expiry_is_a_cancel(simulator: Simulator) -> None:
    """Owner's cancel landing in the loop turn its request's deadline fires: CancelledError
    (not APITimeoutError) for many requests; the client still serves afterwards."""
    simulator.faults = [Fault("stall", route="get")]
    loop = asyncio.get_running_loop()
    async with client_for(simulator, timeout=0.1, max_retries=0, retry_policy=None) as client:
        tasks = [asyncio.create_task(client.models.get(first_model(simulator))) for _ in range(20)]
        await asyncio.sleep(0.02)
        # cancel each request at exactly its own tick's time (a slow start can spread the
        # twenty over two ticks)
        ticks = client._transport._deadlines._ticks
        assert sum(len(tick.due) for tick in ticks.values()) == 20
        for number, tick in ticks.items():
            for deadline in tick.due:
                loop.call_at(number * TICK, deadline._task.cancel)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert all(isinstance(result, asyncio.CancelledError) for result in results), results
        simulator.faults = []
        assert (await client.models.get(first_model(simulator))).id == first_model(simulator)


async def test_taskgroup_sibling_timeouts_are_cancels(simulator: Simulator) -> None:
    """In a TaskGroup, one stalled get with a short per-call timeout fails; its hung
    siblings are cancelled (CancelledError), and only the one APITimeoutError is raised."""
    simulator.faults = [Fault("stall", route="get")]
    model_id = first_model(simulator)
    async with client_for(simulator, timeout=5, max_retries=0, retry_policy=None) as client:
        with pytest.raises(ExceptionGroup) as caught:
            async with asyncio.timeout(5), asyncio.TaskGroup() as group:
                group.create_task(client.models.get(model_id, timeout=0.05))
                for _ in range(10):
                    group.create_task(client.models.get(model_id))
        assert len(caught.value.exceptions) == 1
        assert isinstance(caught.value.exceptions[0], hr.APITimeoutError)


async def test_shield_keeps_the_request_its_own_deadline(simulator: Simulator) -> None:
    """`asyncio.shield` around a stalled get: the caller's cancel does not stop it, and the
    shielded request still ends at its own deadline with APITimeoutError."""
    simulator.faults = [Fault("stall", route="get")]
    async with client_for(simulator, timeout=0.2, max_retries=0, retry_policy=None) as client:
        inner = asyncio.ensure_future(client.models.get(first_model(simulator)))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(inner), 0.05)
        assert not inner.done()
        with pytest.raises(hr.APITimeoutError):
            await asyncio.wait_for(inner, 5)


async def test_many_tasks_time_out_together_and_alone(simulator: Simulator) -> None:
    """300 stalled gets from 300 tasks, half with a per-call timeout of 0.05 and half with
    the client's 0.3: every one ends as APITimeoutError, the short ones first."""
    simulator.faults = [Fault("stall", route="get")]
    model_id = first_model(simulator)
    options: dict[str, Any] = {"max_concurrency": 400, "max_retries": 0, "retry_policy": None}
    async with client_for(simulator, timeout=0.3, **options) as client:
        ended: dict[int, float] = {}
        started = time.monotonic()

        async def get(index: int) -> None:
            try:
                await client.models.get(model_id, timeout=0.05 if index % 2 else None)
            finally:
                ended[index] = time.monotonic() - started

        results = await asyncio.wait_for(
            asyncio.gather(*(get(i) for i in range(300)), return_exceptions=True), 10
        )
    assert all(isinstance(result, hr.APITimeoutError) for result in results)
    assert max(ended[i] for i in range(1, 300, 2)) < min(ended[i] for i in range(0, 300, 2))


# -- odd values --------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [1e-9, 5e-324, 1])
async def test_tiny_timeouts_end_a_stalled_get(simulator: Simulator, timeout: float) -> None:
    """Client timeouts of 1e-9 s, the smallest float and 1 (an int) end a stalled get."""
    simulator.faults = [Fault("stall", route="get")]
    async with client_for(simulator, timeout=timeout, max_retries=0, retry_policy=None) as client:
        with pytest.raises(hr.APITimeoutError):
            await asyncio.wait_for(client.models.get(first_model(simulator)), 5)


@pytest.mark.parametrize("timeout", [1e308, 10**400, sys.float_info.max])
async def test_astronomical_timeouts_work_and_a_per_call_one_wins(
    simulator: Simulator, timeout: float
) -> None:
    """Huge client timeouts (1e308, a 400-digit int, float max): gets answer; a per-call
    0.05 still ends a stalled get."""
    async with client_for(simulator, timeout=timeout, max_retries=0, retry_policy=None) as client:
        assert (await client.models.get(first_model(simulator))).id == first_model(simulator)
        simulator.faults = [Fault("stall", route="get")]
        with pytest.raises(hr.APITimeoutError):
            await asyncio.wait_for(client.models.get(first_model(simulator), timeout=0.05), 5)
        with pytest.raises(TimeoutError) as caught:  # the per-call huge one never fires
            await asyncio.wait_for(client.models.get(first_model(simulator), timeout=10**400), 0.2)
        assert not isinstance(caught.value, hr.APITimeoutError)


# -- what finished requests leave behind -------------------------------------------------------


async def test_finished_requests_leave_no_timers_behind(simulator: Simulator) -> None:
    """Gets that answer long before a long timeout leave no timer scheduled: a client with
    timeout=3600 serving a request every tick must not pile up an hour of timers."""
    loop = asyncio.get_running_loop()
    model_id = first_model(simulator)
    async with client_for(simulator, timeout=3600) as client:
        await client.models.get(model_id)
        before = live_timers(loop)
        for _ in range(40):
            await client.models.get(model_id)
            await asyncio.sleep(0.011)  # the next get's deadline falls in a new tick
        after = live_timers(loop)
        ticks = len(client._transport._deadlines._ticks)
    # Found by review: each tick's timer and set used to stay until the deadline would have
    # come (an hour here); the last request of a tick to end now cancels its timer.
    assert after - before < 5, f"{after - before} timers left scheduled"
    assert ticks < 5, f"{ticks} ticks kept"


async def test_a_dropped_client_is_collected_without_warnings(simulator: Simulator) -> None:
    """A client that timed out a stalled get and is dropped unclosed is garbage collected
    (its deadlines keep no reference to it) without 'Unclosed' warnings."""
    import weakref

    simulator.faults = [Fault("stall", route="get")]
    client = client_for(simulator, timeout=0.05, max_retries=0, retry_policy=None)
    with pytest.raises(hr.APITimeoutError):
        await client.models.get(first_model(simulator))
    gone = weakref.ref(client)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
        await asyncio.sleep(0.05)
        gc.collect()
    assert gone() is None
    assert not [w for w in caught if "nclosed" in str(w.message)], [str(w.message) for w in caught]


async def test_close_ends_requests_hung_before_the_headers(simulator: Simulator) -> None:
    """close() while 10 gets hang (no headers yet) inside 60 s deadlines ends them at once
    with a HappyRobotError, and the client refuses later calls."""
    simulator.faults = [Fault("hang", route="get")]
    client = client_for(simulator, timeout=60, max_retries=0, retry_policy=None)
    tasks = [asyncio.create_task(client.models.get(first_model(simulator))) for _ in range(10)]
    await asyncio.sleep(0.2)
    await client.close()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 3)
    assert all(isinstance(result, hr.HappyRobotError) for result in results), results
    with pytest.raises(hr.HappyRobotError, match="closed"):
        await client.models.get(first_model(simulator))


async def test_close_ends_requests_stalled_mid_body(simulator: Simulator) -> None:
    """close() while 3 gets are stalled mid-body inside 60 s deadlines ends them at once
    with a HappyRobotError, as it does for requests still waiting for their headers."""
    simulator.faults = [Fault("stall", route="get")]
    client = client_for(simulator, timeout=60, max_retries=0, retry_policy=None)
    tasks = [asyncio.create_task(client.models.get(first_model(simulator))) for _ in range(3)]
    await asyncio.sleep(0.2)
    await client.close()
    done, pending = await asyncio.wait(tasks, timeout=3)
    for task in pending:
        task.cancel()
    # Found by review (older than the deadlines): aiohttp's session.close() does not wake a
    # body read, so these ran on to their deadline; close() now ends its deadlines too.
    assert not pending, f"{len(pending)} requests still running 3 s after close()"
    for task in done:
        error = task.exception()
        assert isinstance(error, hr.APIConnectionError), error
        assert "the client was closed" in str(error) and error.request_sent


async def test_loop_closed_with_deadlines_pending_is_quiet(simulator: Simulator) -> None:
    """asyncio.run (in a thread) ending while a request sits in a 60 s deadline, its task
    left running and the client unclosed: the run ends at once, no exception reaches the
    loop's handler, no 'Unclosed' warning."""
    simulator.faults = [Fault("stall", route="get")]

    async def main() -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: problems.append(ctx))
        client = client_for(simulator, timeout=60, max_retries=0, retry_policy=None)
        task = asyncio.create_task(client.models.get(first_model(simulator)))
        await asyncio.sleep(0.2)
        assert not task.done()
        return problems

    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = await asyncio.wait_for(asyncio.to_thread(asyncio.run, main()), 10)
        gc.collect()
    assert time.monotonic() - started < 5
    assert problems == []
    assert not [w for w in caught if "nclosed" in str(w.message)]
    await wait_until(lambda: simulator.stats.count("get", "stall") == 1)


# -- a borrowed session, the rate limiter, with_options ----------------------------------------


async def test_a_borrowed_sessions_own_total_timeout_does_not_override(
    simulator: Simulator,
) -> None:
    """A borrowed session with its own ClientTimeout(total=0.05, sock_read=0.05): the
    client's timeout is what counts, both ways (a 0.3 s latency answers under timeout=5;
    a stall ends at the client's 0.2)."""
    timeout = aiohttp.ClientTimeout(total=0.05, sock_read=0.05)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = client_for(simulator, timeout=5, session=session, max_retries=0, retry_policy=None)
        simulator.faults = [Fault("latency", route="get", delay=0.3)]
        assert (await client.models.get(first_model(simulator))).id == first_model(simulator)
        simulator.faults = [Fault("stall", route="get")]
        started = time.monotonic()
        with pytest.raises(hr.APITimeoutError):
            await asyncio.wait_for(client.models.get(first_model(simulator), timeout=0.2), 5)
        assert time.monotonic() - started >= 0.2
        await client.close()
        assert not session.closed


async def test_pacing_is_not_counted_in_the_deadline(simulator: Simulator) -> None:
    """rate_limit=5/s and timeout=0.15: five gets queued by the limiter (up to ~0.8 s of
    waiting) all answer; waiting for one's turn does not eat its deadline."""
    model_id = first_model(simulator)
    async with client_for(simulator, timeout=0.15, rate_limit=5) as client:
        models = await asyncio.wait_for(
            asyncio.gather(*(client.models.get(model_id) for _ in range(5))), 10
        )
    assert [model.id for model in models] == [model_id] * 5


async def test_with_options_timeout_ends_a_stall_and_the_parent_keeps_its_own(
    simulator: Simulator,
) -> None:
    """with_options(timeout=0.05) ends a stalled get quickly; the parent (timeout=5) is not
    changed by it."""
    simulator.faults = [Fault("stall", route="get")]
    async with client_for(simulator, timeout=5, max_retries=0, retry_policy=None) as client:
        fast = client.with_options(timeout=0.05)
        started = time.monotonic()
        with pytest.raises(hr.APITimeoutError):
            await asyncio.wait_for(fast.models.get(first_model(simulator)), 5)
        assert time.monotonic() - started < 1
        with pytest.raises(TimeoutError) as caught:
            await asyncio.wait_for(client.models.get(first_model(simulator)), 0.3)
        assert not isinstance(caught.value, hr.APITimeoutError)


async def test_raw_response_of_a_stalled_get_times_out(simulator: Simulator) -> None:
    """with_raw_response.get on a stalled body: APITimeoutError, and a later answer works."""
    simulator.faults = [Fault("stall", route="get")]
    async with client_for(simulator, timeout=0.1, max_retries=0, retry_policy=None) as client:
        with pytest.raises(hr.APITimeoutError):
            await client.models.with_raw_response.get(first_model(simulator))
        simulator.faults = []
        raw = await client.models.with_raw_response.get(first_model(simulator))
        assert raw.status == 200


# -- stall with retries, creates, reconciling --------------------------------------------------


async def test_a_stalled_get_is_retried_and_its_connection_not_reused(simulator: Simulator) -> None:
    """Stalled gets, retried (max_retries=2) on one connection (max_concurrency=1): three
    timeouts, each stalled request ended server-side (its connection dropped, not pooled
    with half a body in it), and the next get answers correctly."""
    simulator.faults = [Fault("stall", route="get")]
    model_id = first_model(simulator)
    policy = hr.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
    async with client_for(
        simulator, timeout=0.05, max_concurrency=1, retry_policy=policy
    ) as client:
        with pytest.raises(hr.APITimeoutError):
            await asyncio.wait_for(client.models.get(model_id), 5)
        await wait_until(lambda: simulator.stats.count("get", "stall") == 3)
        simulator.faults = []
        assert (await client.models.get(model_id)).id == model_id
        models = await client.models.list()
        assert model_id in [model.id for model in models]


@pytest.mark.parametrize(
    "policy",
    [
        None,
        FAST,
        hr.RetryPolicy(max_retries=0, reconcile_delay=0.01),
        hr.RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.01, reconcile_delay=0.01),
    ],
    ids=["default-max0", "fast", "none-retries", "three"],
)
async def test_a_stalled_create_is_reconciled_never_duplicated(
    simulator: Simulator, policy: hr.RetryPolicy | None
) -> None:
    """Every create's answer stalls (the model is stored each time): whatever the retry
    policy, the create returns the one stored model or raises AmbiguousCreateError; there is
    never a second model."""
    simulator.faults = [Fault("stall", route="create")]
    options: dict[str, Any] = {"timeout": 0.1, "retry_policy": policy, "max_retries": 0}
    async with client_for(simulator, **options) as client:
        try:
            model = await asyncio.wait_for(client.models.create(**create_args(simulator, "s")), 9)
        except hr.AmbiguousCreateError:
            pass
        else:
            assert model.name == "s"
    assert models_named(simulator, "s") == 1
    assert simulator.stats.duplicates == 0


async def test_a_stalled_create_whose_lookups_stall_too_is_ambiguous(simulator: Simulator) -> None:
    """Create and list both stall: no resend without proof, AmbiguousCreateError in bounded
    time, one model stored."""
    simulator.faults = [Fault("stall", route="create"), Fault("stall", route="list")]
    async with client_for(simulator, timeout=0.1) as client:
        with pytest.raises(hr.AmbiguousCreateError):
            await asyncio.wait_for(client.models.create(**create_args(simulator, "both")), 9)
    assert models_named(simulator, "both") == 1


async def test_a_stalled_create_inside_the_callers_timeout_is_a_cancel_not_a_resend(
    simulator: Simulator,
) -> None:
    """The caller's asyncio.timeout ends a create whose answer stalls: TimeoutError of the
    caller's, and nothing was sent again (one create request, one model)."""
    simulator.faults = [Fault("stall", route="create")]
    async with client_for(simulator, timeout=5) as client:
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.2):
                await client.models.create(**create_args(simulator, "outer"))
        assert not isinstance(caught.value, hr.HappyRobotError)
    await wait_until(lambda: simulator.stats.count("create", "stall") == 1)
    assert simulator.stats.count("create") == 1
    assert models_named(simulator, "outer") == 1


# -- the watcher and run_batch -----------------------------------------------------------------


async def test_watcher_with_tiny_request_timeout_survives_stalls(
    simulator_factory: SimulatorFactory,
) -> None:
    """A watcher (request_timeout=0.05) whose gets and lists stall keeps going, and
    settles its models once the stalls stop; nothing leaks as CancelledError."""
    sim = await simulator_factory(speed=100.0)
    async with client_for(sim) as client:
        models = [await client.models.create(**create_args(sim, f"w{i}")) for i in range(3)]
        sim.faults = [Fault("stall", route="get"), Fault("stall", route="list")]
        options: dict[str, Any] = {"poll_interval": 0.02, "max_poll_interval": 0.05}
        async with client.watcher(request_timeout=0.05, **options) as watcher:
            handles = [watcher.track(model) for model in models]
            await wait_until(lambda: sim.stats.count("list", "stall") >= 2)
            assert not any(handle.done() for handle in handles)
            sim.faults = []
            async with client.watcher(request_timeout=1, **options) as second:
                finals = await asyncio.wait_for(
                    asyncio.gather(*(second.track(model) for model in models)), 8
                )
            assert {final.status for final in finals} <= {
                hr.ModelStatus.ACTIVE,
                hr.ModelStatus.FAILED,
            }


async def test_models_wait_timeout_ends_while_a_poll_is_stalled(
    simulator_factory: SimulatorFactory,
) -> None:
    """models.wait(timeout=0.3) on a model whose gets and lists all stall (each poll held in
    its 10 s request deadline) raises WatchTimeoutError at about 0.3 s, not a CancelledError
    or a hang, and leaves the task uncancelled."""
    sim = await simulator_factory(speed=0.0)
    async with client_for(sim) as client:
        model = await client.models.create(**create_args(sim, "waited"))
        sim.faults = [Fault("stall", route="get"), Fault("stall", route="list")]
        started = time.monotonic()
        with pytest.raises(hr.WatchTimeoutError):
            await asyncio.wait_for(client.models.wait(model.id, timeout=0.3), 5)
        assert time.monotonic() - started < 2
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0


async def test_run_batch_with_stalled_creates_makes_each_model_once(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """run_batch with a journal, half the creates stalling and a 0.1 s timeout: every job
    ends with exactly one model; rerunning the journal makes nothing new."""
    sim = await simulator_factory(speed=200.0)
    sim.faults = [Fault("stall", 0.5, "create")]
    jobs = [
        hr.TrainingJob(**create_args(sim, f"job-{i}", use_case=i % 3), key=f"k{i}")
        for i in range(12)
    ]
    journal = tmp_path / "run.journal"
    policy = hr.RetryPolicy(
        max_retries=8, initial_delay=0.001, max_delay=0.02, reconcile_delay=0.01, clock_skew=0.2
    )
    options: dict[str, Any] = {"poll_interval": 0.02, "max_poll_interval": 0.05}
    async with client_for(sim, timeout=0.1, retry_policy=policy) as client:
        report = await asyncio.wait_for(hr.run_batch(client, jobs, journal=journal, **options), 9)
    assert len(report) == 12
    await wait_until(lambda: sim.stats.count("create", "stall") >= 1)  # counted once it ends
    sim.faults = []
    for i in range(12):
        assert models_named(sim, f"job-{i}", use_case=i % 3) <= 1
    assert sim.stats.duplicates == 0
    created = sim.stats.models_created
    async with client_for(sim, timeout=0.1, retry_policy=policy) as client:
        await asyncio.wait_for(hr.run_batch(client, jobs, journal=journal, **options), 9)
    assert sim.stats.duplicates == 0
    assert sim.stats.models_created - created <= sum(r.model is None for r in report.results)


# -- the simulator's stall knob ----------------------------------------------------------------


async def test_closing_the_simulator_with_stalled_requests_is_quick_and_counted(
    simulator_factory: SimulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing a simulator holding 20 stalled gets and creates takes well under a second,
    the client sees them cut short (not timed out), each is counted once as 'stall', and
    the server logs no error."""
    sim = await simulator_factory(faults=[Fault("stall")])
    async with client_for(sim, timeout=30, max_retries=0, retry_policy=None) as client:
        tasks = [asyncio.create_task(client.models.get(first_model(sim))) for _ in range(10)]
        tasks += [
            asyncio.create_task(client.models.create(**create_args(sim, f"c{i}")))
            for i in range(10)
        ]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.wait_for(sim.close(), 5)
        assert time.monotonic() - started < 1
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert all(isinstance(result, hr.HappyRobotError) for result in results), results
    assert not any(isinstance(result, hr.APITimeoutError) for result in results)
    assert sim.stats.count("get", "stall") == 10
    assert sim.stats.count("create", "stall") == 10
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_stall_on_a_list_and_on_one_model_only(simulator: Simulator) -> None:
    """Fault('stall', model_id=...) stalls that model's get alone; a stalled list times out."""
    stuck, other = simulator.base_model_ids(simulator.use_case_ids[0])[:2]
    simulator.faults = [Fault("stall", model_id=stuck), Fault("stall", route="list")]
    async with client_for(simulator, timeout=0.1, max_retries=0, retry_policy=None) as client:
        assert (await client.models.get(other)).id == other
        with pytest.raises(hr.APITimeoutError):
            await client.models.get(stuck)
        with pytest.raises(hr.APITimeoutError):
            await client.models.list()


async def test_simulate_cli_stall_fault_stalls_gets_and_shuts_down(tmp_path: Path) -> None:
    """`python -m happyrobot_async simulate --fault stall:1:get`: a get times out, and a
    SIGTERM while another get is stalled exits 0 within seconds."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "simulate", "--port", "0"),
        *("--fault", "stall:1:get"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines: dict[str, str] = {}
        while "stats_url" not in lines:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line
            key, value = line.decode().strip().split(": ", 1)
            lines[key] = value
        model_id = lines["base_model_ids"].split(",")[0]
        client = hr.HappyRobotClient(
            lines["api_key"], lines["base_url"], timeout=0.2, max_retries=0
        )
        async with client:
            with pytest.raises(hr.APITimeoutError):
                await asyncio.wait_for(client.models.get(model_id), 5)
            held = asyncio.create_task(client.models.get(model_id, timeout=30))
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 5)
            assert process.returncode == 0, err.decode()
            with pytest.raises(hr.HappyRobotError):
                await asyncio.wait_for(held, 5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
