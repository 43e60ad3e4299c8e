"""Hostile-server and careless-user attacks on the watcher at scale.

Raw-value snapshots (`_seen`), list sorting (`_listread`), one timer per use
case (`_schedule`, `_scheduling`), lazy handle futures (`_handles`).

Network tests talk HTTP to the real simulator. Hostile lists are served with the
simulator's public `wrong_shape` fault, whose `body` replaces every list response
(gets still answer the server's truth). Pure tests drive `_seen`, `_listread` and
`_schedule` without a network. Each test pins one attack: one that broke them
until fixed (memory kept for past or unread values, a failed handle's model
rebuilt at every read), or one that held.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import random
import tracemalloc
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import Connect, create_models, wait_until

import happyrobot_async as hr
from happyrobot_async import _json
from happyrobot_async._handles import WatchHandle
from happyrobot_async._listread import sort_listed
from happyrobot_async._schedule import Poll, Schedule
from happyrobot_async._seen import MAX_SHAPES, MAX_SHARED_STRINGS, Snapshots
from happyrobot_async._serde import structure
from happyrobot_async._wire import decode_list
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

FAST: dict[str, Any] = {"poll_interval": 0.02, "max_poll_interval": 0.05, "jitter": 0.0}
P, T, U = hr.ModelStatus.PENDING, hr.ModelStatus.TRAINING, hr.ModelStatus.UNKNOWN
A, F = hr.ModelStatus.ACTIVE, hr.ModelStatus.FAILED


# -- plumbing ---------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("no_leftover_tasks")


@pytest.fixture
def connect(still_connect: Connect) -> Connect:
    """Start a simulator where nothing moves unless told, and a client on it."""
    return still_connect


def item(model: hr.Model | str, status: str, **fields: Any) -> dict[str, Any]:
    """A list item for `model` (a Model, or an id in use case "uc-x"); `...` drops a key."""
    org: str | None
    use_case: str | None
    if isinstance(model, str):
        model_id, name, org, use_case = model, f"m-{model[-4:]}", "org-1", "uc-x"
    else:
        model_id, name = model.id, model.name
        org, use_case = model.organization_id, model.use_case_id
    body: dict[str, Any] = {
        "id": model_id,
        "created_at": "2024-05-01T12:00:00Z",
        "status": status,
        "name": name,
        "organization_id": org,
        "use_case_id": use_case,
        "description": "d",
        "trainable": False,
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ...}


def serve(sim: Simulator, *items: Any) -> None:
    """From now on every list answers exactly `items` (gets still answer the truth)."""
    sim.faults = [Fault("wrong_shape", route="list", body=list(items))]


async def until_all(
    handles: Sequence[WatchHandle], status: hr.ModelStatus, timeout: float = 5.0
) -> None:
    """Wait until every handle shows `status`."""
    await wait_until(lambda: all(h.status is status for h in handles), timeout=timeout)


async def until_raw(handles: Sequence[WatchHandle], raw: str) -> None:
    """Wait until every handle shows the server's status string `raw`."""
    await wait_until(lambda: all(h.model and h.model.raw_status == raw for h in handles))


async def lists(sim: Simulator, count: int = 3) -> None:
    """Wait until `count` more lists were answered."""
    start = sim.stats.count("list")
    await wait_until(lambda: sim.stats.count("list") >= start + count)


def chains(changes: Sequence[hr.StatusChange]) -> dict[str, list[tuple[Any, Any]]]:
    """Each model's changes as (previous, current) pairs, checked to link up in order."""
    by_model: dict[str, list[hr.StatusChange]] = defaultdict(list)
    for change in changes:
        by_model[change.model.id].append(change)
    for chain in by_model.values():
        for before, after in itertools.pairwise(chain):
            assert after.previous is before.current and after.at >= before.at
    return {key: [(c.previous, c.current) for c in chain] for key, chain in by_model.items()}


def local_model(model_id: str, use_case_id: str | None) -> hr.Model:
    """A `Model` to track, naming its use case (the server never has to know it)."""
    return hr.Model(
        id=model_id,
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
        status=hr.ModelStatus.PENDING,
        name="local",
        use_case_id=use_case_id,
    )


# -- 1. equal-looking items that are not the same item ------------------------------------


async def test_items_equal_in_python_but_not_the_same_are_read_and_never_reported(
    connect: Connect,
) -> None:
    """Reordered keys, null <-> absent, an unknown key appearing, changing type and leaving,
    another timestamp spelling, a moved use_case_id, NFC vs NFD names, a 200 KB name: each
    is read again (`handle.model` shows it at once) and none is reported; `true` -> `1`
    (equal in Python) is not taken as unchanged but asked with a get. Then each real status
    change is exactly one event, with the right previous."""
    sim, client = await connect()
    a, b = await create_models(sim, client, 2)
    serve(sim, item(a, "pending"), item(b, "pending"))
    nfc, nfd = unicodedata.normalize("NFC", "modèle"), unicodedata.normalize("NFD", "modèle")
    variants: list[tuple[dict[str, Any], Any]] = [
        (dict(reversed(item(a, "pending").items())), lambda m: m.name == a.name),
        (item(a, "pending", description=None), lambda m: m.description is None),
        (item(a, "pending", description=...), lambda m: m.description is None),
        (item(a, "pending", extra=1), lambda m: m.description == "d"),
        (item(a, "pending", extra=True), lambda m: m.description == "d"),
        (item(a, "pending", extra=1.0), lambda m: m.description == "d"),
        (item(a, "pending", created_at="2024-05-01T12:00:00+00:00"), lambda m: True),
        (
            item(a, "pending", use_case_id="moved-elsewhere"),
            lambda m: m.use_case_id == "moved-elsewhere",
        ),
        (item(a, "pending", name=nfc), lambda m: m.name == nfc),
        (item(a, "pending", name=nfd), lambda m: m.name == nfd and m.name != nfc),
        (item(a, "pending", name="x" * 200_000), lambda m: len(m.name) == 200_000),
        (item(a, "pending", trainable=True), lambda m: m.trainable is True),
    ]
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        ha, hb = watcher.track(a), watcher.track(b)
        await wait_until(lambda: ha.status is P and hb.status is P)
        for variant, check in variants:
            serve(sim, variant, item(b, "pending"))
            await lists(sim, 2)
            model = ha.model
            assert model is not None and model == structure(variant, hr.Model), variant
            assert check(model), variant
        gets = sim.stats.count("get")
        serve(sim, item(a, "pending", trainable=1), item(b, "pending"))  # 1 == True, not a bool
        await lists(sim, 3)
        assert sim.stats.count("get") > gets  # asked alone; the server says pending
        assert ha.model is not None and ha.model.trainable is False  # the get's answer
        serve(sim, item(a, "training"), item(b, "pending"))
        await wait_until(lambda: ha.status is T)
        await lists(sim, 3)
        sim.set_status(a.id, "active")
        sim.set_status(b.id, "failed")
        serve(sim, item(a, "active"), item(b, "failed"))
        final_a, _ = await asyncio.wait_for(asyncio.gather(ha, hb), 5)
    got = chains([change async for change in stream])
    assert got == {a.id: [(None, P), (P, T), (T, A)], b.id: [(None, P), (P, F)]}
    assert final_a == structure(item(a, "active"), hr.Model) and ha.model is final_a


async def test_the_same_id_twice_in_one_page_follows_the_last_item(connect: Connect) -> None:
    """With one id listed twice (statuses differ), the last item speaks for the model at
    every poll: no flapping between the two, one event per real move of the last one."""
    sim, client = await connect()
    a, b = await create_models(sim, client, 2)
    serve(sim, item(a, "active"), item(a, "pending"), item(b, "pending"))
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        ha, hb = watcher.track(a), watcher.track(b)
        await wait_until(lambda: ha.status is P and hb.status is P)
        await lists(sim, 5)
        serve(sim, item(a, "pending"), item(a, "training"), item(b, "pending"))
        await wait_until(lambda: ha.status is T)
        await lists(sim, 5)
        serve(sim, item(a, "pending"), item(a, "active"), item(b, "active"))
        await asyncio.wait_for(asyncio.gather(ha, hb), 5)
    got = chains([change async for change in stream])
    assert got == {a.id: [(None, P), (P, T), (T, A)], b.id: [(None, P), (P, A)]}


async def test_items_with_odd_or_missing_ids_spoil_nothing(connect: Connect) -> None:
    """Strangers' items whose id is a number, null, an array, an object, or missing, and
    items that are not objects, cost our models nothing: served by the list, no get."""
    sim, client = await connect()
    a, b = await create_models(sim, client, 2)
    junk: list[Any] = [
        {"id": 12345, "status": "active"},
        {"id": None, "status": "active"},
        {"id": [a.id], "status": "active"},
        {"id": {"x": 1}, "status": "active"},
        {"status": "active"},
        "junk",
        7,
        None,
        [a.id],
    ]
    serve(sim, *junk, item(a, "pending"), item(b, "training"))
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        ha, hb = watcher.track(a), watcher.track(b)
        await wait_until(lambda: ha.status is P and hb.status is T)
        await lists(sim, 3)
        serve(sim, *reversed(junk), item(a, "active"), item(b, "failed"))
        await asyncio.wait_for(asyncio.gather(ha, hb), 5)
    assert sim.stats.count("get") == 0
    got = chains([change async for change in stream])
    assert got == {a.id: [(None, P), (P, A)], b.id: [(None, T), (T, F)]}


async def test_a_nan_in_a_list_makes_it_unreadable_and_gets_take_over(connect: Connect) -> None:
    """A list carrying NaN (not JSON) vouches for nobody: after two such lists each model is
    asked with a get, which sees it settle; no event is lost or doubled."""
    sim, client = await connect()
    a, b = await create_models(sim, client, 2)
    serve(sim, item(a, "pending"), item(b, "pending"))
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        ha, hb = watcher.track(a), watcher.track(b)
        await wait_until(lambda: ha.status is P and hb.status is P)
        serve(sim, item(a, "pending", score=float("nan")), item(b, "pending"))
        await lists(sim, 3)
        if str(_json.BACKEND) == "orjson":  # the stdlib reads NaN: then the list still serves
            await wait_until(lambda: sim.stats.count("get") >= 2)
        sim.set_status(a.id, "active")
        sim.set_status(b.id, "active")
        serve(sim, item(a, "active", score=float("nan")), item(b, "active"))
        await asyncio.wait_for(asyncio.gather(ha, hb), 5)
    got = chains([change async for change in stream])
    assert got == {a.id: [(None, P), (P, A)], b.id: [(None, P), (P, A)]}


async def test_a_model_gone_between_lists_fails_alone_with_not_found(connect: Connect) -> None:
    """A model that vanishes from its list and then answers 404 fails with NotFoundError;
    the other models of its use case are untouched and still served by the list."""
    sim, client = await connect()
    [b] = await create_models(sim, client, 1)
    ghost_id = "e" * 24  # never stored: its get is a 404
    ghost = local_model(ghost_id, b.use_case_id)
    serve(sim, item(ghost_id, "training"), item(b, "pending"))
    async with client.watcher(**FAST) as watcher:
        hg, hb = watcher.track(ghost), watcher.track(b)
        await wait_until(lambda: hg.status is T and hb.status is P)
        serve(sim, item(b, "pending"))
        with pytest.raises(hr.NotFoundError):
            await asyncio.wait_for(hg, 5)
        assert hg.model == structure(item(ghost_id, "training"), hr.Model)
        assert not hb.done()
        sim.set_status(b.id, "active")  # alone in its use case now: asked with gets
        serve(sim, item(b, "active"))
        assert (await asyncio.wait_for(hb, 5)).status is A


# -- 2. every change once, at scale -------------------------------------------------------


async def test_ten_thousand_models_every_change_once_and_nothing_left_behind(
    simulator_factory: SimulatorFactory, stack: AsyncExitStack
) -> None:
    """10,000 models in 10 use cases (more distinct strings than the memo holds): each real
    status change is exactly one event, in order, with a `Model` equal to what
    `models.list` says; `handle.model` shows the latest state, and once settled is the
    final model itself. Settled, they leave no timer, group, handle or entry behind, and
    tracking them all again (new handles, new first sightings) grows nothing."""
    sim = await simulator_factory(speed=0.0, failure_rate=0.0, use_cases=10)
    client = await stack.enter_async_context(hr.HappyRobotClient(sim.api_key, sim.base_url))
    models = await create_models(sim, client, 10_000, use_cases=10)
    async with client.watcher(**FAST, queue_size=100_000) as watcher:
        poller = watcher._poller
        schedule, timers = poller._schedule, poller._schedule._timers
        for round_ in range(2):
            stream = watcher.changes(queue_size=100_000)
            for model in models:
                sim.set_status(model.id, "training" if round_ else None)
            handles = [watcher.track(model) for model in models]
            first = P if round_ == 0 else T
            await until_all(handles, first, timeout=10)
            for model in models[:5000]:
                sim.set_status(model.id, "queued")
            await until_all(handles[:5000], U)
            for model in models:
                sim.set_status(model.id, "training")
            await until_all(handles, T)
            listed: dict[str, hr.Model] = {}
            for use_case_id in sim.use_case_ids:
                listed |= {m.id: m for m in await client.models.list(use_case_id=use_case_id)}
            for handle in handles[::997]:
                assert handle.model == listed[handle.model_id]
            for i, model in enumerate(models):
                sim.set_status(model.id, "failed" if i % 7 == 0 else "active")
            finals = await asyncio.wait_for(asyncio.gather(*handles), 10)
            assert all(h.model is f for h, f in zip(handles, finals, strict=True))
            await wait_until(lambda: not timers._heap)  # the loop sweeps the stale timers
            assert not timers.groups and len(schedule) == 0 and not poller.handles
            assert len(poller._snapshots._strings) <= MAX_SHARED_STRINGS
            stream.close()
            got = [change async for change in stream]
            assert stream.dropped == 0
            by_id = chains(got)
            for i, model in enumerate(models):
                end = F if i % 7 == 0 else A
                path: list[tuple[hr.ModelStatus | None, hr.ModelStatus]] = [(None, first)]
                if i < 5000:
                    path += [(first, U), (U, T)]
                elif first is P:
                    path += [(P, T)]
                assert by_id[model.id] == [*path, (T, end)], (round_, i)
            last = {c.model.id: c.model for c in got if c.current.is_terminal}
            assert all(last[h.model_id] == h.model for h in handles[::997])


# -- 3. schedule churn over the network -----------------------------------------------------


async def test_tracking_untracking_and_retracking_while_the_list_is_in_flight(
    connect: Connect,
) -> None:
    """While a use case's list is in flight: untracking a model fails its handle alone;
    tracking it again gives a new handle, which that very list may serve (its first
    sighting); a new model joining rides a later list. Nobody is lost or doubled."""
    sim, client = await connect()
    a, b, c = await create_models(sim, client, 3)
    sim.faults = [Fault("latency", route="list", delay=0.4)]
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        ha, hb = watcher.track(a), watcher.track(b)
        await wait_until(lambda: sim.stats.in_flight >= 1)
        watcher.untrack(b.id)
        hb2, hc = watcher.track(b), watcher.track(c)
        assert hb2 is not hb and hb.done()
        with pytest.raises(hr.WatcherClosedError):
            await hb
        await wait_until(lambda: all(h.status is P for h in (ha, hb2, hc)))
        sim.faults = []
        for model in (a, b, c):
            sim.set_status(model.id, "active")
        await asyncio.wait_for(asyncio.gather(ha, hb2, hc), 5)
    got = chains([change async for change in stream])
    assert got == {m.id: [(None, P), (P, A)] for m in (a, b, c)}
    assert sim.stats.count("get") == 0


async def test_bare_ids_in_many_use_cases_are_got_once_then_listed(connect: Connect) -> None:
    """60 models tracked by bare id over 3 use cases: a get each, then only lists, and
    each change is one event, also for unknown statuses and back."""
    sim, client = await connect()
    models = await create_models(sim, client, 60, use_cases=3)
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        handles = [watcher.track(model.id) for model in models]
        await wait_until(lambda: all(h.status is P for h in handles))
        gets = sim.stats.count("get")
        assert gets >= 60
        for status, expect in (("queued", U), ("canceled", U), ("training", T)):
            for model in models:
                sim.set_status(model.id, status)
            await until_raw(handles, status)
            assert all(h.status is expect for h in handles)
        for model in models:
            sim.set_status(model.id, "active")
        await asyncio.wait_for(asyncio.gather(*handles), 5)
    assert sim.stats.count("get") == gets  # once grouped, only lists
    got = chains([change async for change in stream])
    assert got == {m.id: [(None, P), (P, U), (U, U), (U, T), (T, A)] for m in models}


async def test_list_faults_between_good_lists_lose_and_double_no_change(connect: Connect) -> None:
    """Lists truncated, malformed, 502, hung, or of the wrong shape, at random between good
    ones while 30 models move through their statuses: each model still reports each
    change exactly once, in order, and ends as the server says."""
    sim, client = await connect()
    models = await create_models(sim, client, 30)
    sim.faults = [
        Fault("truncate", route="list", rate=0.12),
        Fault("malformed_json", route="list", rate=0.12),
        Fault("server_error", route="list", rate=0.12, status=502),
        Fault("wrong_shape", route="list", rate=0.12),
        Fault("hang", route="list", rate=0.05),
    ]
    async with client.watcher(**FAST, request_timeout=0.3) as watcher:
        stream = watcher.changes()
        handles = [watcher.track(model) for model in models]
        await until_all(handles, P)
        for status, expect in (("training", T), ("queued", U), ("training", T)):
            for model in models:
                sim.set_status(model.id, status)
            await until_raw(handles, status)
            await lists(sim, 4)
            assert all(h.status is expect for h in handles)
        for i, model in enumerate(models):
            sim.set_status(model.id, "failed" if i % 2 else "active")
        await asyncio.wait_for(asyncio.gather(*handles), 10)
    got = chains([change async for change in stream])
    assert got == {
        m.id: [(None, P), (P, T), (T, U), (U, T), (T, F if i % 2 else A)]
        for i, m in enumerate(models)
    }


async def test_server_knobs_flipped_live_are_read_but_never_reported(connect: Connect) -> None:
    """Optional fields turned null, then omitted, the newer revision's extra fields on, then
    all back, under 200 watched models: `handle.model` follows each time, no change is
    reported, no get is made; then one real change is one event each."""
    sim, client = await connect()
    models = await create_models(sim, client, 200, use_cases=2)
    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()
        handles = [watcher.track(model) for model in models]
        await until_all(handles, P)
        gets = sim.stats.count("get")

        def shows(check: Any) -> Any:
            return lambda: all(h.model is not None and check(h.model) for h in handles)

        sim.optional_fields = "null"
        await wait_until(shows(lambda m: m.use_case_id is None and m.description is not None))
        sim.optional_fields = "omitted"
        await wait_until(shows(lambda m: m.use_case_id is None and m.description is None))
        sim.optional_fields = "present"
        sim.extra_fields = True
        await wait_until(shows(lambda m: m.use_case_id is not None and m.provider is not None))
        sim.extra_fields = False
        await wait_until(shows(lambda m: m.provider is None))
        assert sim.stats.count("get") == gets
        for model in models:
            sim.set_status(model.id, "active")
        await asyncio.wait_for(asyncio.gather(*handles), 5)
    got = chains([change async for change in stream])
    assert got == {m.id: [(None, P), (P, A)] for m in models}


# -- 4. handles and their lazy futures -------------------------------------------------------


async def test_errors_reached_before_anyone_awaits_are_delivered_without_noise(
    connect: Connect,
) -> None:
    """A 404, a 403 and a malformed get settle three handles before anyone awaits them: no
    'never retrieved' report, even after gc; later, each error reaches every awaiter, a
    cancelled awaiter disturbs no other, and a late callback still runs."""
    sim, client = await connect()
    forbidden, malformed = await create_models(sim, client, 2)
    missing = "f" * 24
    sim.faults = [
        Fault("client_error", route="get", status=403, model_id=forbidden.id),
        Fault("wrong_shape", route="get", model_id=malformed.id, body={"id": 5}),
    ]
    problems: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: problems.append(context))
    expected = {
        missing: hr.NotFoundError,
        forbidden.id: hr.PermissionDeniedError,
        malformed.id: hr.ResponseValidationError,
    }
    async with client.watcher(**FAST) as watcher:
        handles = {model_id: watcher.track(model_id) for model_id in expected}
        await wait_until(lambda: all(h.done() for h in handles.values()))
        gc.collect()
        await asyncio.sleep(0.05)
        assert problems == []
        for model_id, handle in handles.items():
            error_type = expected[model_id]
            assert isinstance(handle.exception(), error_type)

            async def wait(handle: WatchHandle = handle) -> hr.Model:
                return await handle

            waiters = [asyncio.create_task(wait()) for _ in range(3)]
            waiters[0].cancel()
            results = await asyncio.gather(*waiters, return_exceptions=True)
            assert isinstance(results[0], asyncio.CancelledError)
            assert all(isinstance(r, error_type) for r in results[1:])
            called: list[WatchHandle] = []
            handle.add_done_callback(called.append)
            await asyncio.sleep(0)
            assert called == [handle]
        handles.clear()
    gc.collect()
    await asyncio.sleep(0)
    assert problems == []


async def test_a_settled_handle_is_stable_for_every_reader(connect: Connect) -> None:
    """Resolved before anyone awaits: 50 awaiters (one cancelled) all get the very model
    `handle.model` is; a handle failed by raise_on_failure keeps showing the failed model."""
    sim, client = await connect()
    good, bad = await create_models(sim, client, 2)
    sim.set_status(good.id, "active")
    sim.set_status(bad.id, "failed")
    async with client.watcher(**FAST) as watcher:
        hg = watcher.track(good)
        hf = watcher.track(bad, raise_on_failure=True)
        await wait_until(lambda: hg.done() and hf.done())
        final = hg.model
        assert final is not None and final is hg.model and final.status is A
        waiters = [asyncio.ensure_future(hg) for _ in range(50)]
        waiters[7].cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(r is final for i, r in enumerate(results) if i != 7)
        with pytest.raises(hr.TrainingFailedError) as info:
            await hf
        assert hf.model == info.value.model and hf.status is F
    assert hg.model is final


async def test_a_handle_ended_by_an_error_keeps_one_final_model(connect: Connect) -> None:
    """Ended by TrainingFailedError or WatchTimeoutError while its last state came from a
    list, a handle's `model` is one object: the same at every read, and the error's."""
    sim, client = await connect()
    bad, slow, other = await create_models(sim, client, 3)
    sim.set_status(bad.id, "failed")
    async with client.watcher(**FAST) as watcher:
        watcher.track(other)
        hf = watcher.track(bad, raise_on_failure=True)
        ht = watcher.track(slow, timeout=0.3)
        with pytest.raises(hr.TrainingFailedError) as failed:
            await hf
        with pytest.raises(hr.WatchTimeoutError) as late:
            await ht
        assert sim.stats.count("get") == 0  # both were last seen in a list
    assert hf.model == failed.value.model and ht.model == late.value.model  # equal: holds
    assert hf.model is hf.model and ht.model is ht.model
    assert hf.model is failed.value.model and ht.model is late.value.model


async def test_wait_and_watch_over_lists_report_each_change_once(connect: Connect) -> None:
    """`models.watch` over 20 models of one use case yields each change once and ends when
    all are terminal; `models.wait` returns the final model; a 404 among watched models is
    raised after the others' changes."""
    sim, client = await connect()
    models = await create_models(sim, client, 20)

    async def drive() -> None:
        await lists(sim, 2)
        for model in models:
            sim.set_status(model.id, "training")
        await lists(sim, 3)
        for model in models:
            sim.set_status(model.id, "active")

    driver = asyncio.create_task(drive())
    got = [c async for c in client.models.watch([m.id for m in models], poll_interval=0.02)]
    await driver
    assert chains(got) == {m.id: [(None, P), (P, T), (T, A)] for m in models}
    assert (await client.models.wait(models[0].id, poll_interval=0.02)).status is A
    seen: list[hr.StatusChange] = []
    with pytest.raises(hr.NotFoundError):
        async for change in client.models.watch([models[1].id, "f" * 24], poll_interval=0.02):
            seen.append(change)
    assert {c.model.id for c in seen} <= {models[1].id}  # the 404 may come first


# -- 5. pure: the schedule against a plain reference ----------------------------------------


class ReferenceSchedule:
    """The schedule's rules (no jitter) the plain way: a dict of models, scanned each time."""

    def __init__(self, interval: float, max_interval: float, factor: float) -> None:
        self.base, self.cap, self.factor = interval, max_interval, factor
        self.models: dict[str, list[Any]] = {}  # id -> [use case, due, interval]
        self.groups: dict[str, dict[str, None]] = {}
        self.paused = float("-inf")

    def add(self, model_id: str, use_case: str | None, now: float) -> None:
        if model_id not in self.models:
            joins = use_case is not None and bool(self.groups.get(use_case))
            self.models[model_id] = [use_case, now + self.base if joins else now, self.base]
            if use_case is not None:
                self.groups.setdefault(use_case, {})[model_id] = None

    def remove(self, model_id: str) -> None:
        entry = self.models.pop(model_id, None)
        if entry is not None and entry[0] is not None:
            del self.groups[entry[0]][model_id]
            if not self.groups[entry[0]]:
                del self.groups[entry[0]]

    def set_use_case(self, model_id: str, use_case: str | None) -> None:
        entry = self.models[model_id]
        if entry[0] != use_case:
            due, interval = entry[1], entry[2]
            self.remove(model_id)
            self.models[model_id] = [use_case, due, interval]
            if use_case is not None:
                self.groups.setdefault(use_case, {})[model_id] = None

    def plan(self, now: float) -> list[Poll]:
        if now < self.paused:
            return []
        polls: list[Poll] = []
        for model_id, entry in list(self.models.items()):
            if entry[1] > now:
                continue
            use_case = entry[0]
            if use_case is not None and len(self.groups[use_case]) >= 2:
                polls.append(Poll.list(use_case, tuple(self.groups[use_case])))
            else:
                polls.append(Poll.get(model_id))
            entry[1] = now + min(entry[2], self.cap)
        return sorted(set(polls), key=repr)

    def record(self, model_id: str, changed: bool, now: float) -> None:
        entry = self.models[model_id]
        entry[2] = self.base if changed else min(entry[2] * self.factor, self.cap)
        entry[1] = now + entry[2]

    def hold(self, model_ids: Sequence[str], now: float) -> bool:
        if now >= self.paused:
            return False
        for model_id in model_ids:
            if model_id in self.models:
                self.models[model_id][1] = self.paused
        return True

    def next_due(self) -> float | None:
        dues = [entry[1] for entry in self.models.values()]
        return max(min(dues), self.paused) if dues else None


def test_the_schedule_acts_as_a_plain_reference_under_random_churn() -> None:
    """Random adds, removals, use-case moves, plans, records (alone and many at once, out of
    order, for lists in flight), failures, pauses and holds: the heap-of-groups schedule
    plans the same polls, with the same intervals and due times, as a plain scan would;
    it may wake early (a use case's timer), never late."""
    for seed in range(150):
        rng = random.Random(seed)
        base = rng.choice([0.5, 1.0, 2.0])
        settings = (base, max(base, rng.choice([1.0, 5.0, 30.0])), rng.choice([1.0, 1.5, 2.0]))
        real, ref = Schedule(*settings, jitter=0.0), ReferenceSchedule(*settings)
        ids, use_cases = [f"m{i}" for i in range(10)], ["u1", "u2", "u3", None]
        now, out = 0.0, []
        for step in range(250):
            roll, model_id = rng.random(), rng.choice(ids)
            where = (seed, step)
            if roll < 0.15:
                use_case = rng.choice(use_cases)
                real.add(model_id, use_case, now)
                ref.add(model_id, use_case, now)
            elif roll < 0.22:
                real.remove(model_id)
                ref.remove(model_id)
            elif roll < 0.27 and model_id in ref.models:
                use_case = rng.choice(use_cases)
                real.set_use_case(model_id, use_case)
                ref.set_use_case(model_id, use_case)
            elif roll < 0.45:
                polls = real.plan(now)
                assert sorted(polls, key=repr) == ref.plan(now), where
                out += [(poll, now) for poll in polls]
            elif roll < 0.7 and out:
                poll, planned = out.pop(rng.randrange(len(out)))
                if poll.kind == "list":
                    assert poll.use_case_id is not None
                    same = [m for m in poll.model_ids if rng.random() < 0.7]
                    for m in poll.model_ids:
                        if m not in same and m in ref.models:
                            changed = rng.random() < 0.5
                            real.record(m, changed, planned)
                            ref.record(m, changed, planned)
                    real.record_many(poll.use_case_id, same, planned)
                    for m in same:
                        if m in ref.models:
                            ref.record(m, False, planned)
                elif poll.model_ids[0] in ref.models:
                    m = poll.model_ids[0]
                    if rng.random() < 0.2:
                        real.failed(m, now)
                        ref.record(m, False, now)
                    else:
                        changed = rng.random() < 0.5
                        real.record(m, changed, planned)
                        ref.record(m, changed, planned)
            elif roll < 0.75:
                real.pause_until(now + 1.0)
                ref.paused = max(ref.paused, now + 1.0)
            elif roll < 0.8:
                held = rng.sample(ids, 3)
                assert real.hold(held, now) == ref.hold(held, now), where
            else:
                deadline, truth = real.next_deadline(), ref.next_due()
                assert (deadline is None) == (truth is None), where
                if deadline is not None and truth is not None:
                    assert deadline <= truth, where
                    now = max(now, deadline) + rng.choice([0.0, 0.01, 0.5])
            for m in ids:
                assert (m in real) == (m in ref.models), where
                if m in ref.models:
                    use_case, due, interval = ref.models[m]
                    assert real.use_case_of(m) == use_case, where
                    assert (real.interval_of(m), real.due_at(m)) == (interval, due), where


def test_ten_thousand_models_settled_round_after_round_leave_no_timer() -> None:
    """10,000 models in 10 use cases (and 100 of unknown use case), planned, recorded and
    removed, three rounds over: nothing is tracked, no timer is left once swept, and the
    interval memo does not grow round after round."""
    s = Schedule(jitter=0.1, rng=random.Random(0))
    timers = s._timers
    sizes = []
    for round_ in range(3):
        now = 1000.0 * round_
        ids = [f"r{round_}-m{i:05}" for i in range(10_000)]
        for i, model_id in enumerate(ids):
            s.add(model_id, f"u{i % 10}", now)
        for i in range(100):
            s.add(f"r{round_}-x{i}", None, now)
        for _ in range(5):
            for poll in s.plan(now):
                if poll.kind == "list":
                    assert poll.use_case_id is not None
                    s.record_many(poll.use_case_id, poll.model_ids[1:], now)
                    s.record(poll.model_ids[0], True, now)
                else:
                    s.failed(poll.model_ids[0], now)
            deadline = s.next_deadline()
            assert deadline is not None
            now = deadline
        assert len(timers._heap) <= 64 + 2 * len(s)
        for model_id in [*ids, *(f"r{round_}-x{i}" for i in range(100))]:
            s.remove(model_id)
        assert len(s) == 0 and not timers.groups
        assert s.next_deadline() is None and timers._heap == []
        sizes.append(len(s._grown))
    assert sizes[0] == sizes[-1]


# -- 6. pure: snapshots past the memos' bounds, and what they keep alive ---------------------


def follow(model_ids: Sequence[str]) -> tuple[dict[str, WatchHandle], Snapshots]:
    return {model_id: WatchHandle(model_id) for model_id in model_ids}, Snapshots()


def read(
    handles: dict[str, WatchHandle], snapshots: Snapshots, items: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """One list through `sort_listed`, each changed model observed; (changed, same) ids."""
    listed = decode_list(200, {}, json.dumps(items).encode())
    found = sort_listed(tuple(handles), listed, handles, frozenset(), snapshots)
    for model, snapshot in found.changed:
        handles[model.id].observe(model, snapshot)
    assert found.unserved == []
    return [model.id for model, _ in found.changed], found.same


async def test_past_the_string_and_shape_bounds_nothing_changes() -> None:
    """5,000 models with their own descriptions (past the 4,096-string memo) in 300 shapes
    (past the 256-shape memo): an item is `same` exactly when it did not change, and
    every handle reads as the model its last item structures to."""
    ids = [f"{i:024}" for i in range(5000)]
    handles, snapshots = follow(ids)
    assert MAX_SHARED_STRINGS < 5000 and MAX_SHAPES < 300

    def items(moved: set[int], status: str) -> list[dict[str, Any]]:
        return [
            item(m, status if i in moved else "pending", description=f"d{i}", **{f"k{i % 300}": i})
            for i, m in enumerate(ids)
        ]

    everyone = set(range(5000))
    changed, same = read(handles, snapshots, items(set(), "pending"))
    assert (len(changed), same) == (5000, [])
    changed, same = read(handles, snapshots, items(set(), "pending"))
    assert (changed, len(same)) == ([], 5000)
    moved = set(range(0, 5000, 3))
    last = items(moved, "training")
    changed, same = read(handles, snapshots, last)
    assert changed == [ids[i] for i in sorted(moved)]
    assert same == [ids[i] for i in sorted(everyone - moved)]
    for i in range(0, 5000, 251):
        assert handles[ids[i]].model == structure(last[i], hr.Model)
    assert len(snapshots._strings) <= MAX_SHARED_STRINGS
    assert len(snapshots._shapes) <= MAX_SHAPES


async def test_a_field_changing_at_every_poll_does_not_keep_its_past_values_alive() -> None:
    """A model whose description is a fresh 1 MB string at each of 40 polls keeps only the
    latest one alive: the watcher's memory is about one description, not forty."""
    ids = ["a" * 24]
    handles, snapshots = follow(ids)
    tracemalloc.start()
    try:
        for poll in range(40):
            read(
                handles,
                snapshots,
                [item(ids[0], "training", description=f"{poll:03}" + "x" * 1_000_000)],
            )
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert handles[ids[0]].model is not None
    assert kept < 5_000_000, f"{kept / 1e6:.0f} MB kept for one 1 MB description"


async def test_a_snapshot_keeps_no_more_than_the_model_it_stands_for() -> None:
    """An unknown key carrying 100 KB per item, over 50 watched models, is not kept alive
    by their handles (the `Model` they stand for has no such field)."""
    ids = [f"{i:024}" for i in range(50)]
    handles, snapshots = follow(ids)
    tracemalloc.start()
    try:
        read(
            handles, snapshots, [item(m, "training", debug_log=f"{m}" + "y" * 100_000) for m in ids]
        )
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(handle.model is not None for handle in handles.values())
    assert kept < 1_000_000, f"{kept / 1e6:.1f} MB kept for fields no Model has"
