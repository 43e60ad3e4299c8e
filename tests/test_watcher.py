"""The training watcher against the simulator on 127.0.0.1: real HTTP, fast clock."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import warnings
from collections import defaultdict
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import Connect, connector, create_models, simulator_in_a_thread, wait_until

import happyrobot_async as hr
from happyrobot_async.testing import Fault
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

FAST: dict[str, Any] = {"poll_interval": 0.02, "max_poll_interval": 0.1}
MISSING_ID = "f" * 24


@pytest.fixture
def connect(simulator_factory: SimulatorFactory, stack: AsyncExitStack) -> Connect:
    """Start a simulator (fast clock unless told) and a client on it."""
    return connector(simulator_factory, stack, speed=50.0)


def assert_chains(changes: list[hr.StatusChange]) -> dict[str, list[hr.StatusChange]]:
    """Check each model's changes form one chain: None first, then previous == last current."""
    by_model: dict[str, list[hr.StatusChange]] = defaultdict(list)
    for change in changes:
        by_model[change.model.id].append(change)
    for chain in by_model.values():
        assert chain[0].previous is None
        for before, after in itertools.pairwise(chain):
            assert after.previous is before.current
            assert after.model.raw_status != before.model.raw_status
            assert after.at >= before.at
    return by_model


# -- one model to each end -------------------------------------------------------------


async def test_one_model_becomes_active(connect: Connect) -> None:
    """A model that trains resolves its handle with the final active model."""
    sim, client = await connect(failure_rate=0.0)
    [model] = await create_models(sim, client)
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        handle = watcher.track(model)
        final = await handle
    assert final.status is hr.ModelStatus.ACTIVE
    assert handle.done() and handle.model == final and handle.status is hr.ModelStatus.ACTIVE
    chain = assert_chains([change async for change in stream])[model.id]
    assert chain[-1].current is hr.ModelStatus.ACTIVE
    assert chain[-1].at.tzinfo is UTC


@pytest.mark.parametrize("raise_on_failure", [False, True])
async def test_one_model_fails(connect: Connect, raise_on_failure: bool) -> None:
    """A failed model resolves the handle, or raises TrainingFailedError when asked to."""
    sim, client = await connect(failure_rate=1.0)
    [model] = await create_models(sim, client)
    async with client.watcher(**FAST) as watcher:
        handle = watcher.track(model, raise_on_failure=raise_on_failure)
        if raise_on_failure:
            with pytest.raises(hr.TrainingFailedError) as info:
                await handle
            final = info.value.model
        else:
            final = await handle
    assert final.id == model.id and final.status is hr.ModelStatus.FAILED


# -- many models, few requests ---------------------------------------------------------


async def test_300_models_cost_one_list_per_use_case_per_tick(connect: Connect) -> None:
    """300 models in 3 use cases all reach the server's final state with ~3 lists per tick."""
    sim, client = await connect(speed=10.0, failure_rate=0.3)
    models = await create_models(sim, client, 300, use_cases=3)
    sim.reset_stats()
    interval = 0.05
    loop = asyncio.get_running_loop()
    async with client.watcher(poll_interval=interval, max_poll_interval=0.2) as watcher:
        stream = watcher.changes()
        started = loop.time()
        finals = await asyncio.gather(*(watcher.track(model) for model in models))
        elapsed = loop.time() - started
    for model, final in zip(models, finals, strict=True):
        assert final.id == model.id
        assert final.status.value == sim.get_model(model.id).status
    assert {final.status for final in finals} == {hr.ModelStatus.ACTIVE, hr.ModelStatus.FAILED}
    assert_chains([change async for change in stream])
    stats = sim.stats
    polls = stats.count("list") + stats.count("get")
    ticks = elapsed / (0.9 * interval) + 2
    assert polls <= 3 * ticks  # at most one request per use case per tick
    assert polls < 300 // 2  # far below one GET per model per tick (300 a tick)
    assert stats.count("get") <= 3 * 3  # only a use case's last model is fetched alone


async def test_bare_ids_are_looked_up_then_grouped(connect: Connect) -> None:
    """Models tracked by id are fetched once each, then their use case's list serves them."""
    sim, client = await connect(speed=10.0, failure_rate=0.0)
    models = await create_models(sim, client, 6, use_cases=2)
    sim.reset_stats()
    async with client.watcher(**FAST) as watcher:
        await asyncio.gather(*(watcher.track(model.id) for model in models))
    log = sim.stats.log
    assert {(entry.route, entry.path) for entry in log[:6]} == {
        ("get", f"/api/v1/models/{model.id}") for model in models
    }
    assert [entry.route for entry in log[6:8]] == ["list", "list"]


async def test_an_item_changed_besides_its_status_is_read_but_not_reported(
    connect: Connect,
) -> None:
    """Each list's unchanged items are skipped, but an item that changed with its status
    kept is read again: the handle shows the new fields, and no change is reported for it."""
    sim, client = await connect(speed=0.0)  # nothing moves until told
    models = await create_models(sim, client, 2)
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        handles = [watcher.track(model) for model in models]
        await wait_until(lambda: all(handle.status is not None for handle in handles))
        assert [handle.model.provider for handle in handles if handle.model] == [None, None]
        sim.extra_fields = True  # each item gains fields, its status unchanged
        await wait_until(
            lambda: all(h.model is not None and h.model.provider == "happyrobot" for h in handles)
        )
        listed = sim.stats.count("list")
        await wait_until(lambda: sim.stats.count("list") >= listed + 5)  # unchanged lists
        for model in models:
            sim.set_status(model.id, "active")
        finals = await asyncio.wait_for(asyncio.gather(*handles), 5.0)
    changes = [change async for change in stream]
    chains = assert_chains(changes)
    assert [[c.current for c in chains[model.id]] for model in models] == [
        [hr.ModelStatus.PENDING, hr.ModelStatus.ACTIVE]
    ] * 2
    assert all(final.provider == "happyrobot" for final in finals)
    assert sim.stats.count("get") == 0


# -- statuses the SDK does not know ----------------------------------------------------


async def test_unknown_status_is_reported_and_watched_on(connect: Connect) -> None:
    """An unknown status is a change, never terminal; queued → canceled → active is followed."""
    sim, client = await connect()
    [model] = await create_models(sim, client)
    sim.set_status(model.id, "queued")
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        handle = watcher.track(model)
        first = await anext(stream)
        assert (first.previous, first.current) == (None, hr.ModelStatus.UNKNOWN)
        assert first.model.raw_status == "queued"
        polls = sim.stats.count("get")
        await wait_until(lambda: sim.stats.count("get") >= polls + 3)
        assert not handle.done() and handle.status is hr.ModelStatus.UNKNOWN

        sim.set_status(model.id, "canceled")
        second = await anext(stream)
        assert (second.previous, second.current) == (hr.ModelStatus.UNKNOWN,) * 2
        assert second.model.raw_status == "canceled"
        assert not handle.done()

        sim.set_status(model.id, "active")
        final = await handle
        third = await anext(stream)
    assert final.status is hr.ModelStatus.ACTIVE
    assert (third.previous, third.current) == (hr.ModelStatus.UNKNOWN, hr.ModelStatus.ACTIVE)


# -- models that do not exist ----------------------------------------------------------


async def test_unknown_id_fails_with_not_found(connect: Connect) -> None:
    """A model tracked by an id the server does not know fails with NotFoundError."""
    _, client = await connect()
    async with client.watcher(**FAST) as watcher:
        with pytest.raises(hr.NotFoundError):
            await watcher.track(MISSING_ID)
        assert MISSING_ID not in watcher


async def test_model_missing_from_its_list_is_checked_with_a_get(connect: Connect) -> None:
    """A model absent from its use case's list is confirmed by a get; a 404 fails only it."""
    sim, client = await connect(failure_rate=0.0)
    [real] = await create_models(sim, client)
    ghost = hr.Model(
        id=MISSING_ID,
        created_at=datetime.now(UTC),
        status=hr.ModelStatus.PENDING,
        name="ghost",
        use_case_id=real.use_case_id,
    )
    sim.reset_stats()
    async with client.watcher(**FAST) as watcher:
        ghost_handle, real_handle = watcher.track(ghost), watcher.track(real)
        with pytest.raises(hr.NotFoundError):
            await ghost_handle
        assert (await real_handle).status is hr.ModelStatus.ACTIVE
    assert sim.stats.count("get", 404) == 1
    assert sim.stats.count("list") >= 1


# -- the server says "wait" ------------------------------------------------------------


@pytest.mark.parametrize("route", ["list", "get"])
async def test_retry_after_pauses_all_polling(
    connect: Connect, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 with Retry-After stops every poll for that long, then polling resumes."""
    pause = 0.4  # polls are one attempt each: the watcher itself waits the pause out
    sim, client = await connect(failure_rate=0.0)
    caplog.set_level(logging.WARNING, logger="happyrobot_async")
    models = await create_models(sim, client, 2 if route == "list" else 1)
    sim.reset_stats()
    sim.set_faults([Fault("rate_limit", route=route, retry_after=pause)])  # type: ignore[arg-type]
    async with client.watcher(**FAST) as watcher:
        handles = [watcher.track(model) for model in models]
        await wait_until(lambda: sim.stats.count(route, 429) > 0)
        sim.set_faults([])
        finals = await asyncio.gather(*handles)
    assert all(final.status is hr.ModelStatus.ACTIVE for final in finals)
    log = sim.stats.log
    refused = [entry.time for entry in log if entry.status == "429"]
    assert len(refused) == 1
    after = [entry.time for entry in log if entry.time > refused[0]]
    assert after, "polling resumed"
    assert min(after) >= refused[0] + pause
    assert any("pausing all polling" in record.message for record in caplog.records)


async def test_poll_errors_never_stop_the_loop(connect: Connect) -> None:
    """Server errors on half the polls are retried later; every model still resolves."""
    sim, client = await connect(speed=20.0, client_options={"max_retries": 0})
    models = await create_models(sim, client, 4, use_cases=2)
    sim.set_faults([Fault("server_error", rate=0.5, status=502)])
    async with client.watcher(**FAST) as watcher:
        finals = await asyncio.gather(*(watcher.track(model) for model in models))
    assert all(final.status.is_terminal for final in finals)
    assert sim.stats.count("list", 502) + sim.stats.count("get", 502) > 0


async def test_persistent_auth_error_fails_every_handle(connect: Connect) -> None:
    """A key the server keeps refusing ends every handle with AuthenticationError."""
    sim, _ = await connect()
    base = sim.base_model_ids(sim.use_case_ids[0])[0]
    async with (
        hr.HappyRobotClient(api_key="wrong key", base_url=sim.base_url) as client,
        client.watcher(**FAST) as watcher,
    ):
        handles = [watcher.track(base), watcher.track(MISSING_ID)]
        for handle in handles:
            with pytest.raises(hr.AuthenticationError):
                await handle
    # two rounds of gets: 401s to requests in flight together count once, two in a row give
    # up (the second round's later get is not sent if the first one's 401 came back before)
    assert sim.stats.count("get", 401) in (3, 4)


# -- deadlines ---------------------------------------------------------------------------


async def test_timeout_raises_with_the_last_state(connect: Connect) -> None:
    """A model not terminal by its deadline fails with WatchTimeoutError carrying its last state."""
    sim, client = await connect(speed=1.0, pending_seconds=(100.0, 100.0))
    [model] = await create_models(sim, client)
    async with client.watcher(**FAST) as watcher:
        with pytest.raises(hr.WatchTimeoutError) as info:
            await watcher.track(model, timeout=0.2)
        assert model.id not in watcher
    error = info.value
    assert error.model_id == model.id and error.timeout == 0.2
    assert error.model is not None and error.model.status is hr.ModelStatus.PENDING


# -- shutdown and cancellation ---------------------------------------------------------


async def test_leaving_the_context_shuts_down_cleanly() -> None:
    """Leaving mid-request stops cleanly: no task left, no warning, pending handles closed."""
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: problems.append(context))
    with (
        warnings.catch_warnings(),
        simulator_in_a_thread(pending_seconds=(1e6, 1e6)) as (sim, sim_stats),
    ):
        warnings.simplefilter("error")
        use_case_id = sim.use_case_ids[0]
        async with hr.HappyRobotClient(api_key=sim.api_key, base_url=sim.base_url) as client:
            models = [
                await client.models.create(
                    use_case_id=use_case_id,
                    name=f"slow {i}",
                    from_model_id=sim.base_model_ids(use_case_id)[0],
                    train_sample_ids=["a"],
                    test_sample_ids=["b"],
                )
                for i in range(3)
            ]
            received: list[hr.StatusChange] = []

            async def consume(stream: hr.ChangeStream) -> None:
                received.extend([change async for change in stream])

            sim.set_faults([Fault("latency", delay=0.3)])
            async with client.watcher(**FAST, on_change=lambda change: None) as watcher:
                consumer = asyncio.create_task(consume(watcher.changes()))
                handles = [watcher.track(model) for model in models]
                await wait_until(lambda: sim_stats().in_flight > 0)  # the list, slowed down
            await asyncio.wait_for(consumer, 1.0)
            assert received == []  # the one list never answered: nothing was seen
            assert asyncio.all_tasks() == {asyncio.current_task()}
            for handle in handles:
                with pytest.raises(hr.WatcherClosedError):
                    await handle
            with pytest.raises(hr.WatcherClosedError):
                watcher.track(models[0])
            assert [change async for change in watcher.changes()] == []
        del handles, watcher
        gc.collect()
    assert problems == []


async def test_cancelling_one_waiter_stops_nothing_else(connect: Connect) -> None:
    """A cancelled or timed-out await leaves the handle, other awaiters and watching alone."""
    sim, client = await connect(speed=10.0, failure_rate=0.0)
    first, second = await create_models(sim, client, 2)
    async with client.watcher(**FAST) as watcher:
        handle, other = watcher.track(first), watcher.track(second)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(handle, 0.01)
        patient = asyncio.create_task(asyncio.wait_for(handle, 10))
        doomed = asyncio.create_task(asyncio.wait_for(handle, 10))
        await asyncio.sleep(0)  # not a delay: one loop step, in which both start awaiting
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert not handle.done() and first.id in watcher
        assert (await patient).status is hr.ModelStatus.ACTIVE
        assert (await handle).status is hr.ModelStatus.ACTIVE
        assert (await other).status is hr.ModelStatus.ACTIVE
    assert sim.get_model(first.id).status == "active"


async def test_same_id_same_handle_and_untrack(connect: Connect) -> None:
    """Tracking an id twice gives one handle; untrack fails it; tracking again starts anew."""
    sim, client = await connect(speed=5.0, failure_rate=0.0)
    [model] = await create_models(sim, client)
    with pytest.raises(RuntimeError):
        client.watcher().track(model)
    async with client.watcher(**FAST) as watcher:
        handle = watcher.track(model)
        assert watcher.track(model.id) is handle and len(watcher) == 1
        ended: list[hr.WatchHandle] = []
        handle.add_done_callback(ended.append)
        watcher.untrack(model.id)
        with pytest.raises(hr.WatcherClosedError):
            await handle
        assert isinstance(handle.exception(), hr.WatcherClosedError)
        await wait_until(lambda: ended == [handle])
        again = watcher.track(model.id)
        assert again is not handle and model.id in watcher
        with pytest.raises(asyncio.InvalidStateError):
            again.exception()
        assert (await again).status is hr.ModelStatus.ACTIVE
        assert again.exception() is None and model.id not in watcher
        with pytest.raises(hr.InvalidRequestError):
            watcher.track("short")


# -- consumers -------------------------------------------------------------------------


async def test_callbacks_get_every_change_in_order_without_blocking_polls(connect: Connect) -> None:
    """Callbacks see every change in order; a stuck async one does not stall polling."""
    sim, client = await connect(failure_rate=0.0)
    models = await create_models(sim, client, 3)
    seen_sync: list[hr.StatusChange] = []
    seen_async: list[hr.StatusChange] = []
    release = asyncio.Event()

    async def slow(change: hr.StatusChange) -> None:
        await release.wait()
        seen_async.append(change)

    async with (
        client.watcher(**FAST, on_change=seen_sync.append) as sync_watcher,
        client.watcher(**FAST, on_change=slow) as async_watcher,
    ):
        await asyncio.gather(*(sync_watcher.track(model) for model in models))
        await asyncio.gather(*(async_watcher.track(model) for model in models))
        assert seen_async == []
        release.set()
    assert_chains(seen_sync)
    assert_chains(seen_async)
    assert {change.model.id for change in seen_async} == {model.id for model in models}


async def test_a_slow_subscriber_loses_the_oldest_changes(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """A full subscriber queue drops its oldest changes, counts them and warns once."""
    sim, client = await connect(failure_rate=0.0)
    models = await create_models(sim, client, 5)
    caplog.set_level(logging.WARNING, logger="happyrobot_async")
    async with client.watcher(**FAST, queue_size=2) as watcher:
        slow, fast = watcher.changes(), watcher.changes(queue_size=100)
        everything: list[hr.StatusChange] = []

        async def keep_up() -> None:
            everything.extend([change async for change in fast])

        reader = asyncio.create_task(keep_up())
        await asyncio.gather(*(watcher.track(model) for model in models))
    await reader
    kept = [change async for change in slow]  # closed with the watcher: what it kept
    assert kept == everything[-2:]
    assert slow.dropped == len(everything) - 2 > 0
    assert len([r for r in caplog.records if "dropping the oldest" in r.message]) == 1


# -- the one-shot helpers --------------------------------------------------------------


async def test_wait(connect: Connect) -> None:
    """models.wait returns the final model, or raises on timeout or (if asked) failure."""
    sim, client = await connect(failure_rate=0.0)
    [model] = await create_models(sim, client)
    final = await client.models.wait(model.id, poll_interval=0.02)
    assert final.status is hr.ModelStatus.ACTIVE
    assert (await client.models.wait(model.id, poll_interval=0.02)) == final
    with pytest.raises(hr.InvalidRequestError):
        await client.models.wait("short")

    slow_sim, slow_client = await connect(speed=1.0, failure_rate=1.0)
    [slow] = await create_models(slow_sim, slow_client)
    with pytest.raises(hr.WatchTimeoutError):
        await slow_client.models.wait(slow.id, timeout=0.1, poll_interval=0.02)
    slow_sim.clock.advance(100.0)
    with pytest.raises(hr.TrainingFailedError):
        await slow_client.models.wait(slow.id, raise_on_failure=True, poll_interval=0.02)


async def test_watch(connect: Connect) -> None:
    """models.watch yields each model's changes in order and ends when all are terminal."""
    sim, client = await connect(failure_rate=0.5)
    models = await create_models(sim, client, 4, use_cases=2)
    ids = [model.id for model in models]
    changes = [change async for change in client.models.watch(ids, poll_interval=0.02)]
    chains = assert_chains(changes)
    assert set(chains) == set(ids)
    assert all(chain[-1].current.is_terminal for chain in chains.values())

    again = [change async for change in client.models.watch(ids[:1], poll_interval=0.02)]
    assert [change.current for change in again] == [chains[ids[0]][-1].current]
    assert [change async for change in client.models.watch([])] == []

    seen = []
    with pytest.raises(hr.NotFoundError):
        async for change in client.models.watch([*ids, MISSING_ID], poll_interval=0.02):
            seen.append(change)
    assert {change.model.id for change in seen} <= set(ids)


async def test_watcher_settings_are_checked() -> None:
    """Nonsense watcher settings are refused before anything runs."""
    client: Any = object()
    for bad in (
        {"poll_interval": 0},
        {"poll_interval": 5, "max_poll_interval": 1},
        {"backoff_factor": 0.5},
        {"jitter": 1.5},
        {"queue_size": 0},
        {"request_timeout": 0},
        {"max_retry_after": -1},
    ):
        with pytest.raises(hr.InvalidRequestError):
            hr.TrainingWatcher(client, **bad)


async def test_interval_runs_from_when_a_poll_is_planned(connect: Connect) -> None:
    """A slow list does not stretch the cycle: polls start one interval apart, not one
    interval after the previous response."""
    sim, client = await connect(speed=0.0)
    models = await create_models(sim, client, count=3)
    sim.faults = [Fault("latency", route="list", delay=0.15)]
    sim.reset_stats()
    async with client.watcher(poll_interval=0.3, max_poll_interval=0.3, jitter=0.0) as watcher:
        for model in models:
            watcher.track(model)
        await wait_until(lambda: sim.stats.count("list") >= 5)
    starts = [entry.time for entry in sim.stats.log if entry.route == "list"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps and max(gaps) < 0.3 + 0.1  # response-based scheduling would give ≥ 0.45
