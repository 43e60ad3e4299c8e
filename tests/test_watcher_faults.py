"""One bad model never blinds the others: the watcher against a misbehaving simulator.

Real HTTP to the simulator on 127.0.0.1; every poll is one request with its own
deadline, and what an error means for a handle is `_settle.judge_error`'s.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from conftest import Connect, connector, create_models, wait_until

import happyrobot_async as hr
from happyrobot_async._pollqueue import PollQueue
from happyrobot_async._schedule import Poll
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

FAST: dict[str, Any] = {"poll_interval": 0.05, "max_poll_interval": 0.1}
POISON_ID = "e" * 24


@pytest.fixture
def connect(simulator_factory: SimulatorFactory, stack: AsyncExitStack) -> Connect:
    """Start a simulator (fast clock unless told) and a client on it."""
    return connector(simulator_factory, stack, speed=50.0, failure_rate=0.0)


def gets_of(sim: Simulator, model_id: str) -> list[str]:
    """The statuses of the finished gets of one model, in order."""
    path = f"/api/v1/models/{model_id}"
    return [entry.status for entry in sim.stats.log if entry.path == path]


def unlisted(model_id: str, use_case_id: str, status: str = "pending") -> hr.Model:
    """A `Model` to track by hand, claiming `use_case_id`."""
    return hr.Model(
        id=model_id,
        created_at=datetime.now(UTC),
        status=hr.ModelStatus(status),
        name="by hand",
        use_case_id=use_case_id,
    )


# -- 1. a hung request delays nobody else ---------------------------------------------


async def test_a_hung_get_delays_no_other_model(connect: Connect) -> None:
    """While one model's get hangs, another's changes are seen within an interval + a round trip."""
    interval = 0.2
    sim, client = await connect(speed=0.0)
    stuck, moving = await create_models(sim, client, 2, use_cases=2)  # lone models: one get each
    sim.faults = [Fault("hang", model_id=stuck.id)]
    loop = asyncio.get_running_loop()
    settings: dict[str, Any] = {
        "poll_interval": interval,
        "max_poll_interval": interval,
        "jitter": 0.0,
    }
    async with hr.TrainingWatcher(client, **settings, request_timeout=30.0) as watcher:
        stream = watcher.changes()
        hung, handle = watcher.track(stuck), watcher.track(moving)
        first = await asyncio.wait_for(anext(stream), 2.0)
        assert first.model.id == moving.id
        for status in ("training", "active"):
            sim.set_status(moving.id, status)
            set_at = loop.time()
            change = await asyncio.wait_for(anext(stream), 5.0)
            assert (change.model.id, change.model.raw_status) == (moving.id, status)
            assert loop.time() - set_at <= interval * 1.5 + 0.5
        assert (await handle).status is hr.ModelStatus.ACTIVE
        assert not hung.done()
        await wait_until(lambda: sim.stats.in_flight == 1)  # the one hung get, never sent twice
        assert gets_of(sim, stuck.id) == []


async def test_a_hung_list_is_given_up_at_request_timeout(connect: Connect) -> None:
    """A list that never answers is given up at request_timeout, made again, never twice at once."""
    sim, client = await connect()
    models = await create_models(sim, client, 2)
    sim.faults = [Fault("hang", route="list")]
    sim.reset_stats()
    async with hr.TrainingWatcher(client, **FAST, request_timeout=0.3) as watcher:
        handles = [watcher.track(model) for model in models]
        await wait_until(lambda: sim.stats.count("list", "hang") >= 2)
        assert not any(handle.done() for handle in handles)
        # one list per request_timeout (plus backoff), not one per 0.05 s interval (~14)
        assert sim.stats.count("list") + sim.stats.in_flight <= 4
        sim.faults = []
        finals = await asyncio.wait_for(asyncio.gather(*handles), 5.0)
    assert all(final.status is hr.ModelStatus.ACTIVE for final in finals)


# -- 2. a Retry-After of a day ----------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("rate_limit", route="get", retry_after=86400),
        Fault("server_error", route="get", status=503, retry_after=86400),
    ],
    ids=["429", "503"],
)
async def test_a_long_retry_after_is_capped(
    connect: Connect, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    """A Retry-After of a day pauses polling only for max_retry_after, then polling resumes."""
    cap = 0.3
    caplog.set_level(logging.WARNING, logger="happyrobot_async")
    sim, client = await connect()
    [model] = await create_models(sim, client)
    sim.faults = [fault]
    async with hr.TrainingWatcher(client, **FAST, max_retry_after=cap) as watcher:
        handle = watcher.track(model)
        await wait_until(lambda: sim.stats.count("get") > 0)
        sim.faults = []
        final = await asyncio.wait_for(handle, 5.0)
    assert final.status is hr.ModelStatus.ACTIVE
    log = sim.stats.log
    refused = [entry.time for entry in log if entry.status in ("429", "503")]
    assert len(refused) == 1
    resumed = min(entry.time for entry in log if entry.time > refused[0])
    assert cap <= resumed - refused[0] <= cap + 0.5
    assert any("pausing all polling for 0.3 s" in r.message for r in caplog.records)


# -- 3. refusals about one model fail that model alone, at once --------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("client_error", status=403), hr.PermissionDeniedError),
        (Fault("client_error", status=400), hr.BadRequestError),
        (Fault("client_error", status=422), hr.BadRequestError),
        (Fault("wrong_shape", route="get", body={"id": 42}), hr.ResponseValidationError),
        (Fault("malformed_json", route="get"), hr.ResponseValidationError),
    ],
    ids=["403", "400", "422", "wrong shape", "malformed json"],
)
async def test_a_refused_model_fails_alone_and_at_once(
    connect: Connect, fault: Fault, error: type[hr.HappyRobotError]
) -> None:
    """403, 400/422 or an undecodable get fail that model's handle on the first answer."""
    sim, client = await connect()
    bad, good = await create_models(sim, client, 2, use_cases=2)  # lone models: one get each
    sim.faults = [attrs.evolve(fault, route="get", model_id=bad.id)]
    async with client.watcher(**FAST) as watcher:
        refused, handle = watcher.track(bad), watcher.track(good)
        with pytest.raises(error):
            await asyncio.wait_for(refused, 1.0)
        assert bad.id not in watcher
        assert (await handle).status is hr.ModelStatus.ACTIVE
    assert len(gets_of(sim, bad.id)) == 1  # not retried
    with pytest.raises(error):
        await asyncio.wait_for(client.models.wait(bad.id, poll_interval=0.05), 1.0)


@pytest.mark.parametrize("status", [500, 503])
async def test_a_failing_model_is_retried_until_it_answers(connect: Connect, status: int) -> None:
    """A 5xx on one model's gets is transient: it is polled again on the schedule and settles."""
    sim, client = await connect()
    [model] = await create_models(sim, client)
    sim.faults = [Fault("server_error", status=status, model_id=model.id)]
    async with client.watcher(**FAST) as watcher:
        handle = watcher.track(model)
        await wait_until(lambda: gets_of(sim, model.id).count(str(status)) >= 3)
        assert not handle.done()
        sim.faults = []
        final = await asyncio.wait_for(handle, 5.0)
    assert final.status is hr.ModelStatus.ACTIVE


# -- 4. a poison item in a list ---------------------------------------------------------


async def test_a_poison_item_spoils_nothing_else(connect: Connect) -> None:
    """An undecodable item in a use case's list keeps none of its other models from settling."""
    sim, client = await connect()
    models = await create_models(sim, client, 3)
    use_case_id = models[0].use_case_id
    assert use_case_id is not None
    sim.add_raw_item(use_case_id, {"id": "f" * 24, "name": "x", "created_at":
                     "2024-01-01T00:00:00z", "trainable": None, "status": "pending"})  # fmt: skip
    sim.reset_stats()
    async with client.watcher(**FAST) as watcher:
        finals = await asyncio.wait_for(
            asyncio.gather(*(watcher.track(model) for model in models)), 5.0
        )
    assert all(final.status is hr.ModelStatus.ACTIVE for final in finals)
    assert sim.stats.count("list") >= 1
    assert sim.stats.count("get") == 0  # the list served all of them


async def test_our_own_poison_item_is_asked_with_a_get_and_fails_alone(connect: Connect) -> None:
    """A tracked model whose list item is bad is asked with a get; still bad, it fails alone."""
    sim, client = await connect(speed=0.0)  # the others stay pending until told
    models = await create_models(sim, client, 2)
    use_case_id = models[0].use_case_id
    assert use_case_id is not None
    sim.add_raw_item(use_case_id, {"id": POISON_ID, "name": "x", "status": "pending"})
    sim.reset_stats()
    async with client.watcher(**FAST) as watcher:
        poison = watcher.track(unlisted(POISON_ID, use_case_id))
        handles = [watcher.track(model) for model in models]
        with pytest.raises(hr.ResponseValidationError):
            await asyncio.wait_for(poison, 1.0)  # while its use case is still listed
        assert not any(handle.done() for handle in handles) and len(watcher) == 2
        for model in models:
            sim.set_status(model.id, "active")
        finals = await asyncio.wait_for(asyncio.gather(*handles), 5.0)
    assert all(final.status is hr.ModelStatus.ACTIVE for final in finals)
    assert gets_of(sim, POISON_ID) == ["200"]  # one get, its answer undecodable: no retry


async def test_a_model_missing_from_its_list_settles_through_a_get(connect: Connect) -> None:
    """A model its use case's list does not serve is asked with a get, and settles by it."""
    sim, client = await connect(speed=0.0)  # nothing moves until told
    elsewhere, neighbour = await create_models(sim, client, 2, use_cases=2)
    assert neighbour.use_case_id is not None
    stray = unlisted(elsewhere.id, neighbour.use_case_id)  # that list never has it
    sim.set_status(elsewhere.id, "active")
    sim.reset_stats()
    async with client.watcher(**FAST) as watcher:
        handle, other = watcher.track(stray), watcher.track(neighbour)
        final = await asyncio.wait_for(handle, 1.0)  # while its claimed use case is listed
        assert not other.done()
        sim.set_status(neighbour.id, "active")
        finals = [final, await asyncio.wait_for(other, 5.0)]
    assert [final.status for final in finals] == [hr.ModelStatus.ACTIVE] * 2
    assert finals[0].use_case_id == elsewhere.use_case_id
    assert sim.stats.count("list") >= 1
    assert gets_of(sim, elsewhere.id)[0] == "200"


async def test_an_item_that_turns_malformed_is_asked_with_a_get(connect: Connect) -> None:
    """A watched model whose list item stops decoding after good sightings is asked with a
    get (skipping unchanged items hides no change), and still settles; its neighbour is
    served by the list all along."""
    sim, client = await connect(speed=0.0)  # nothing moves until told
    target, other = await create_models(sim, client, 2)
    assert target.use_case_id is not None
    async with client.watcher(**FAST) as watcher:
        handles = [watcher.track(target), watcher.track(other)]
        await wait_until(lambda: all(handle.status is not None for handle in handles))
        sim.reset_stats()
        bad = {"id": target.id, "name": "x", "status": "pending", "trainable": 1}
        sim.add_raw_item(target.use_case_id, bad)  # listed after the good one: it wins
        await wait_until(lambda: "200" in gets_of(sim, target.id))
        assert not any(handle.done() for handle in handles)
        for model in (target, other):
            sim.set_status(model.id, "active")
        finals = await asyncio.wait_for(asyncio.gather(*handles), 5.0)
    assert [final.status for final in finals] == [hr.ModelStatus.ACTIVE] * 2
    assert gets_of(sim, other.id) == []


# -- 5. the client is closed under the watcher -------------------------------------------


async def test_closing_the_client_ends_every_handle_and_all_polling(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handles fail with WatcherClosedError, no request follows, and nothing is left behind."""
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: problems.append(context))
    sim, client = await connect(speed=0.0)
    models = await create_models(sim, client, 4, use_cases=3)  # a list, a get, and a hung get
    after_close: list[str] = []  # polls attempted on the closed client

    def spying(read: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
        async def spy(*args: Any) -> Any:
            if client.closed:
                after_close.append(name)
            return await read(*args)

        return spy

    for name in ("_poll_get", "_poll_list"):
        monkeypatch.setattr(client.models, name, spying(getattr(client.models, name), name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.faults = [Fault("hang", model_id=models[1].id)]
        async with client.watcher(**FAST) as watcher:
            stream = watcher.changes()
            handles = [watcher.track(model) for model in models]
            await wait_until(lambda: sim.stats.count("list") >= 2 and sim.stats.in_flight == 1)
            await client.close()
            for handle in handles:
                with pytest.raises(hr.WatcherClosedError, match="the client was closed"):
                    await asyncio.wait_for(handle, 2.0)
            assert len(watcher) == 0
            with pytest.raises(hr.WatcherClosedError):
                watcher.track(models[0])
            await wait_until(
                lambda: sim.stats.in_flight == 0
            )  # the hung get, dropped with the client
            served = sim.stats.total_requests
            await asyncio.sleep(5 * FAST["poll_interval"])  # not a sync: time for a stray poll
            assert sim.stats.total_requests == served
            assert after_close == []
            changes = [change async for change in stream]  # the stream has ended
            assert {change.model.id for change in changes} <= {model.id for model in models}
        with pytest.raises(hr.WatcherClosedError):
            await client.models.wait(models[0].id)
        del handles, watcher, stream
        gc.collect()
    assert problems == []
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- the poll queue underneath ----------------------------------------------------------


async def test_a_poll_queued_as_the_last_worker_leaves_is_still_made() -> None:
    """A poll queued just as the last worker leaves gets a worker of its own, never stranded."""
    loop = asyncio.get_running_loop()
    made: list[str] = []

    async def make(poll: Poll, planned: float) -> None:
        made.append(poll.model_ids[0])
        if poll.model_ids == ("a",):  # runs right after this worker finds the queue empty
            loop.call_soon(queue.put, Poll.get("b"), 0.0)

    queue = PollQueue(make, make, lambda _: None, 1)
    queue.put(Poll.get("a"), 0.0)
    await wait_until(lambda: made == ["a", "b"], timeout=1.0)
