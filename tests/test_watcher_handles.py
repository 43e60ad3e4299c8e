"""A `WatchHandle` on its own: its outcome, its future made on demand, its last state.

Pure: no network; an event loop only because a handle belongs to one.
"""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime
from typing import Any

import pytest

import happyrobot_async as hr
from happyrobot_async._handles import WatchHandle
from happyrobot_async._seen import Snapshots

ID = "a" * 24


def model(status: str = "active", **fields: Any) -> hr.Model:
    return hr.Model(
        id=ID,
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
        status=hr.ModelStatus(status),
        name="m",
        raw_status=status,
        **fields,
    )


async def test_an_outcome_reached_before_anyone_awaits_is_kept() -> None:
    """Resolved or failed before any await or callback, the handle still hands its outcome
    to a later awaiter and to a later callback, as a future would."""
    resolved, failed = WatchHandle(ID), WatchHandle(ID)
    final, error = model(), hr.NotFoundError("gone", status_code=404)
    resolved.resolve(final)
    failed.fail(error)
    resolved.resolve(model("failed"))  # too late: the first outcome stays
    assert resolved.done() and failed.done()
    assert resolved.exception() is None and failed.exception() is error
    assert await resolved is final and resolved.model is final
    with pytest.raises(hr.NotFoundError):
        await failed
    called: list[WatchHandle] = []
    failed.add_done_callback(called.append)
    await asyncio.sleep(0)
    assert called == [failed]


async def test_a_pending_handle_settles_its_awaiters_and_callbacks() -> None:
    """Awaited and given a callback while pending, the handle wakes both when it ends."""
    handle = WatchHandle(ID)
    with pytest.raises(asyncio.InvalidStateError):
        handle.exception()
    called: list[WatchHandle] = []
    handle.add_done_callback(called.append)

    async def wait() -> hr.Model:
        return await handle

    waiter = asyncio.create_task(wait())
    await asyncio.sleep(0)
    handle.resolve(model())
    assert await waiter == model()
    assert called == [handle]


async def test_a_failed_handle_nobody_awaits_makes_no_noise() -> None:
    """An error nobody retrieves is not reported as 'never retrieved', future or not."""
    problems: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: problems.append(context))
    lazy, eager = WatchHandle(ID), WatchHandle(ID)
    eager.add_done_callback(lambda _: None)  # makes its future now
    for handle in (lazy, eager):
        handle.fail(hr.APIConnectionError("down"))
    lazy.add_done_callback(lambda _: None)  # makes its future after the fact
    await asyncio.sleep(0)
    del lazy, eager, handle
    gc.collect()
    assert problems == []


async def test_the_last_state_from_a_list_reads_like_a_model() -> None:
    """Kept as a snapshot of its list item, the last state is still a `Model` to read."""
    item = {"id": ID, "created_at": "2024-05-01T00:00:00Z", "status": "queued", "name": "m"}
    snapshots = Snapshots()
    snapshots.share(item, ID)
    snapshot = snapshots.take(item)
    handle = WatchHandle(ID)
    assert handle.observe(model("pending"), None) is None
    assert handle.observe(model("queued"), snapshot) == "pending"
    assert handle.status is hr.ModelStatus.UNKNOWN
    assert handle.model == model("queued")
    assert handle.unchanged(dict(item)) and not handle.unchanged({**item, "status": "active"})
