"""Hostile-server and careless-user attacks on the watcher, each pinning one finding.

Real HTTP only: the simulator on 127.0.0.1, or a tiny `aiohttp.web` server of our
own where the simulator cannot misbehave the way we need. Each test was marked
`xfail(strict=True)` while its finding stood; all twelve are fixed now.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Connect, create_models, loop_in_a_thread, wait_until

import happyrobot_async as hr
from happyrobot_async.testing import Fault

FAST: dict[str, Any] = {"poll_interval": 0.05, "max_poll_interval": 0.1}
ID_A, ID_B = "a" * 24, "b" * 24

Serve = Callable[[web.Application], Awaitable[str]]


# -- plumbing ---------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("no_leftover_tasks")


@pytest.fixture
def connect(still_connect: Connect) -> Connect:
    """Start a simulator where nothing moves unless told, and a client on it."""
    return still_connect


@pytest.fixture
def serve(stack: AsyncExitStack) -> Serve:
    """Run an `aiohttp.web` app of our own on 127.0.0.1; return its API root."""

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1"

    return start


def app_with(
    get: Callable[[web.Request], Awaitable[web.StreamResponse]],
    list_: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
) -> web.Application:
    app = web.Application()
    app.router.add_get("/api/v1/models/{id}", get)
    if list_ is not None:
        app.router.add_get("/api/v1/models", list_)
    return app


def model_json(model_id: str, status: str, use_case_id: str | None = "uc-1") -> dict[str, Any]:
    return {
        "id": model_id,
        "name": "hostile",
        "created_at": "2024-01-01T00:00:00Z",
        "status": status,
        "use_case_id": use_case_id,
    }


def tasks_named(name: str) -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == name and not task.done()]


# -- 1. sixteen hung models take every poll worker ------------------------------------------


async def test_sixteen_hung_models_delay_no_other_model(connect: Connect) -> None:
    """With 16 models whose gets hang, a 17th is still seen within an interval + a round trip."""
    sim, client = await connect()
    models = await create_models(sim, client, 17)
    stuck, moving = models[:16], models[16]
    sim.faults = [Fault("hang", route="get", model_id=model.id) for model in stuck]
    settings: dict[str, Any] = {"poll_interval": 0.1, "max_poll_interval": 0.1, "jitter": 0.0}
    async with client.watcher(**settings, request_timeout=3.0) as watcher:
        for model in stuck:
            watcher.track(model.id)  # bare ids: one get each, all hung
        await wait_until(lambda: sim.stats.in_flight == 16)
        stream = watcher.changes()
        watcher.track(moving.id)
        first = await asyncio.wait_for(anext(stream), 0.1 * 1.5 + 0.5)
        assert first.model.id == moving.id


# -- 2. errors no retry can cure are retried forever ----------------------------------------


async def test_wait_on_a_client_bound_to_another_loop_raises(connect: Connect) -> None:
    """models.wait on a client bound to another event loop raises that error, as models.get does."""
    sim, _ = await connect()
    client = hr.HappyRobotClient(sim.api_key, sim.base_url)
    with loop_in_a_thread() as other:
        try:
            model = await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(
                    client.models.get(sim.base_model_ids(sim.use_case_ids[0])[0]), other
                )
            )
            with pytest.raises(hr.HappyRobotError, match="event loop"):
                await client.models.get(model.id)  # the plain read says so at once
            with pytest.raises(hr.HappyRobotError, match="event loop"):
                await asyncio.wait_for(client.models.wait(model.id, poll_interval=0.02), 1.0)
        finally:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(client.close(), other))


async def test_wait_on_a_closed_borrowed_session_raises(connect: Connect) -> None:
    """models.wait through a borrowed session its owner closed raises, as models.get does."""
    sim, _ = await connect()
    session = aiohttp.ClientSession()
    client = hr.HappyRobotClient(sim.api_key, sim.base_url, session=session)
    [model] = await create_models(sim, client)
    await session.close()
    with pytest.raises((RuntimeError, hr.HappyRobotError), match="closed"):
        await client.models.get(model.id)  # the plain read says so at once
    with pytest.raises((RuntimeError, hr.HappyRobotError)):
        await asyncio.wait_for(client.models.wait(model.id, poll_interval=0.02), 1.0)


async def test_tracking_a_model_with_a_malformed_id_fails(connect: Connect) -> None:
    """A Model whose id is not a model id fails its handle (or track) like a bare bad id does."""
    _, client = await connect()
    bad = hr.Model(
        id="short", created_at=datetime.now(UTC), status=hr.ModelStatus.PENDING, name="x"
    )
    async with client.watcher(**FAST) as watcher:
        with pytest.raises(hr.InvalidRequestError):
            watcher.track("short")
        with pytest.raises(hr.InvalidRequestError):
            await asyncio.wait_for(watcher.track(bad), 1.0)


# -- 3. a blank use case from the server blinds the watcher ---------------------------------


async def test_models_with_a_blank_use_case_still_settle(serve: Serve) -> None:
    """Two models the server files under use case " " are still followed to their end."""
    gets = 0

    async def get(request: web.Request) -> web.Response:
        nonlocal gets
        gets += 1
        status = "pending" if gets <= 2 else "active"
        return web.json_response(model_json(request.match_info["id"], status, use_case_id=" "))

    async def list_(request: web.Request) -> web.Response:
        items = [model_json(i, "active", use_case_id=" ") for i in (ID_A, ID_B)]
        return web.json_response(items)

    base_url = await serve(app_with(get, list_))
    async with (
        hr.HappyRobotClient("key", base_url) as client,
        client.watcher(**FAST) as watcher,
    ):
        handles = [watcher.track(ID_A), watcher.track(ID_B)]
        finals = await asyncio.wait_for(asyncio.gather(*handles), 1.5)
    assert [final.status for final in finals] == [hr.ModelStatus.ACTIVE] * 2


# -- 4. on_change closing its own watcher ---------------------------------------------------


async def test_on_change_may_close_its_own_watcher(connect: Connect) -> None:
    """An async on_change that calls `await watcher.aclose()` returns, and leaves no task."""
    sim, client = await connect()
    [model] = await create_models(sim, client)
    closed = asyncio.Event()

    async def stop_at_first(change: hr.StatusChange) -> None:
        await watcher.aclose()
        closed.set()

    watcher = client.watcher(**FAST, on_change=stop_at_first)
    async with watcher:
        handle = watcher.track(model)
        await asyncio.wait_for(closed.wait(), 1.0)
    with pytest.raises(hr.WatcherClosedError):
        await handle
    assert tasks_named("happyrobot_async on_change") == []


# -- 5. leaving `async with` is cut short while on_change is stuck --------------------------


async def test_a_cancelled_exit_leaves_no_on_change_task(connect: Connect) -> None:
    """If leaving the watcher is cancelled while on_change is stuck, its task is ended too."""
    sim, client = await connect()
    [model] = await create_models(sim, client)
    called, never = asyncio.Event(), asyncio.Event()

    async def stuck(change: hr.StatusChange) -> None:
        called.set()
        await never.wait()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5), client.watcher(**FAST, on_change=stuck) as watcher:
            watcher.track(model)
            await called.wait()
    await asyncio.sleep(0.05)
    assert tasks_named("happyrobot_async on_change") == []


# -- 6. a second cancellation while leaving -------------------------------------------------


async def test_a_twice_cancelled_exit_still_ends_handles_and_streams(connect: Connect) -> None:
    """Cancelled again while leaving, the watcher still fails its handles and ends its streams."""
    sim, client = await connect()
    [model] = await create_models(sim, client)
    watcher = client.watcher(**FAST)
    entered = asyncio.Event()

    async def owner() -> None:
        async with watcher:
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(owner())
    await entered.wait()
    handle, stream = watcher.track(model), watcher.changes()
    consumer = asyncio.create_task(anext(stream))
    await wait_until(lambda: consumer.done())  # the first sighting: polling works
    rest = asyncio.create_task(anext(stream, None))
    task.cancel()
    while True:  # until the owner is inside aclose(): then cancel it again
        await asyncio.sleep(0)
        try:
            watcher.track(model)
        except hr.WatcherClosedError:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        with pytest.raises(hr.WatcherClosedError):
            await asyncio.wait_for(handle, 1.0)
        assert await asyncio.wait_for(rest, 1.0) is None  # the stream ended
    finally:
        rest.cancel()
        await watcher.aclose()


# -- 7. one stream, two consumers ------------------------------------------------------------


async def test_a_stream_read_by_two_tasks_ends_for_both(connect: Connect) -> None:
    """Two tasks reading one `changes()` stream both end when the watcher closes."""
    sim, client = await connect()
    models = await create_models(sim, client, 2)
    got: list[list[hr.StatusChange]] = [[], []]

    async with client.watcher(**FAST) as watcher:
        stream = watcher.changes()

        async def read(into: list[hr.StatusChange]) -> None:
            into.extend([change async for change in stream])

        readers = [asyncio.create_task(read(into)) for into in got]
        await asyncio.sleep(0)  # both are waiting now
        handles = [watcher.track(model) for model in models]
        await wait_until(lambda: all(handle.status is not None for handle in handles))
        for model in models:
            sim.set_status(model.id, "active")
        await asyncio.gather(*handles)
    _, pending = await asyncio.wait(readers, timeout=1.0)
    for reader in pending:
        reader.cancel()
    assert pending == set()
    assert len(got[0]) + len(got[1]) == 4  # two sightings and two ends, each read once


# -- 8. one 401 blip ------------------------------------------------------------------------


async def test_one_auth_blip_seen_by_two_polls_fails_nothing(serve: Serve) -> None:
    """A single 401 blip that two concurrent polls both see is tolerated like a lone 401."""
    gets = 0
    both_in = asyncio.Event()

    async def get(request: web.Request) -> web.Response:
        nonlocal gets
        gets += 1
        if gets <= 2:  # the blip: both first polls, in flight together, are refused
            if gets == 2:
                both_in.set()
            await both_in.wait()
            return web.json_response({"message": "Unauthorized"}, status=401)
        return web.json_response(model_json(request.match_info["id"], "active"))

    base_url = await serve(app_with(get))
    async with (
        hr.HappyRobotClient("key", base_url) as client,
        client.watcher(**FAST) as watcher,
    ):
        handles = [watcher.track(ID_A), watcher.track(ID_B)]
        finals = await asyncio.wait_for(asyncio.gather(*handles), 2.0)
    assert [final.status for final in finals] == [hr.ModelStatus.ACTIVE] * 2


# -- 9. request_timeout does not bound a poll ------------------------------------------------


async def test_a_poll_never_outlasts_request_timeout(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a server that answers at once, no poll lasts longer than request_timeout."""
    sim, client = await connect()
    grouped = await create_models(sim, client, 3)
    lone = (await create_models(sim, client, 3, use_cases=3))[1:]  # one each in two other use cases
    sim.faults = [Fault("rate_limit", route="list", retry_after=0)]  # 429 storm, lists only
    durations: list[float] = []
    poll_get = client.models._poll_get

    async def timed(model_id: str, timeout: float) -> hr.Model:
        started = time.monotonic()
        try:
            return await poll_get(model_id, timeout)
        finally:
            durations.append(time.monotonic() - started)

    monkeypatch.setattr(client.models, "_poll_get", timed)
    request_timeout = 0.2
    settings: dict[str, Any] = {"poll_interval": 0.02, "max_poll_interval": 0.05}
    async with client.watcher(**settings, request_timeout=request_timeout) as watcher:
        for model in grouped:
            watcher.track(model)
        await asyncio.sleep(1.5)  # the storm engages the client's limiter, then halves it
        for model in lone:
            watcher.track(model)
        await wait_until(lambda: len(durations) >= 1)
    assert max(durations) <= request_timeout + 0.15, durations


# -- 10. a list that can never be read -------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("oversize", route="list", size=5000),
        Fault("wrong_shape", route="list", body={"items": []}),
    ],
    ids=["oversize", "not an array"],
)
async def test_models_behind_an_unreadable_list_still_settle(
    connect: Connect, fault: Fault
) -> None:
    """Models of a use case whose list never decodes are settled by gets of their own."""
    sim, client = await connect(client_options={"max_response_bytes": 4000})
    models = await create_models(sim, client, 2)
    for model in models:
        sim.set_status(model.id, "active")
    sim.faults = [fault]
    async with client.watcher(**FAST) as watcher:
        handles = [watcher.track(model) for model in models]
        finals = await asyncio.wait_for(asyncio.gather(*handles), 1.5)
    assert [final.status for final in finals] == [hr.ModelStatus.ACTIVE] * 2


# -- 11. a watcher used from another event loop ---------------------------------------------


async def test_track_from_another_event_loop_is_refused(connect: Connect) -> None:
    """Calling track() from another thread's event loop raises instead of half-working."""
    sim, client = await connect()
    [model] = await create_models(sim, client)
    async with client.watcher(**FAST) as watcher:

        async def elsewhere() -> str:
            try:
                watcher.track(model.id, timeout=60)
            except (RuntimeError, hr.HappyRobotError):
                return "refused"
            watcher.untrack(model.id)
            return "accepted"

        outcome = await asyncio.to_thread(asyncio.run, elsewhere())
    assert outcome == "refused"


# -- 12. an on_change that lets a CancelledError out ----------------------------------------


async def test_on_change_survives_a_cancelled_error_of_its_own(connect: Connect) -> None:
    """A callback that awaits a task cancelled by someone else does not silence later changes."""
    sim, client = await connect()
    models = await create_models(sim, client, 2, use_cases=2)
    seen: list[hr.StatusChange] = []

    async def on_change(change: hr.StatusChange) -> None:
        seen.append(change)
        if len(seen) == 1:
            victim = asyncio.create_task(asyncio.sleep(10))
            await asyncio.sleep(0)
            victim.cancel()  # e.g. shut down by another part of the program
            await victim

    async with client.watcher(**FAST, on_change=on_change) as watcher:
        handles = [watcher.track(model) for model in models]
        await wait_until(lambda: all(handle.status is not None for handle in handles))
        for model in models:
            sim.set_status(model.id, "active")
        await asyncio.gather(*handles)
        await wait_until(lambda: len(seen) == 4, timeout=1.0)  # two sightings, two ends
