"""The journal's writer: group commit on an event loop, and intents written ahead of their POSTs."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_batch import QUICK, jobs_for

import happyrobot_async as hr
from happyrobot_async._journal_writer import Appender
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


def types_in(path: Path) -> list[str]:
    """The record types of the journal's whole lines (one being written may show half)."""
    lines = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line)["type"] for line in lines if line.strip()]


def test_outside_an_event_loop_a_durable_line_gets_a_thread_future(tmp_path: Path) -> None:
    """With no running loop, a durable append returns a thread future, resolved once on disk."""
    appender = Appender(tmp_path / "j")
    waiter = appender.append(b"one\n", durable=True)
    assert isinstance(waiter, Future)
    assert waiter.result(timeout=5) is None
    assert (tmp_path / "j").read_bytes() == b"one\n"
    appender.close()


async def test_the_lines_of_one_loop_iteration_share_one_fsync(tmp_path: Path) -> None:
    """A hundred durable lines appended in one go are written together, with one fsync."""
    appender = Appender(tmp_path / "j")
    waiters = [appender.append(f"{i}\n".encode(), durable=True) for i in range(100)]
    assert all(isinstance(w, asyncio.Future) for w in waiters)
    await asyncio.gather(*(w for w in waiters if isinstance(w, asyncio.Future)))
    assert appender.fsyncs == 1
    appender.close()
    assert (tmp_path / "j").read_text().split() == [str(i) for i in range(100)]


async def test_lines_appended_while_a_batch_is_out_go_as_the_next_one(tmp_path: Path) -> None:
    """While one batch is with the thread, a loop's later lines wait and go as one more batch:
    fifty iterations of appends cost far fewer fsyncs than fifty, and keep their order."""
    appender = Appender(tmp_path / "j")
    waiters = []
    for i in range(50):
        waiters.append(appender.append(f"{i}\n".encode(), durable=True))
        await asyncio.sleep(0)
    await asyncio.gather(*(w for w in waiters if isinstance(w, asyncio.Future)))
    assert appender.fsyncs < 50
    appender.close()
    assert (tmp_path / "j").read_text().split() == [str(i) for i in range(50)]


async def test_lines_that_need_no_fsync_are_written_without_one(tmp_path: Path) -> None:
    """Lines appended without `durable` reach the file (for a killed process) but cost no fsync."""
    appender = Appender(tmp_path / "j")
    appender.append(b"status\n", durable=False)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if (tmp_path / "j").read_bytes():
            break
    assert (tmp_path / "j").read_bytes() == b"status\n" and appender.fsyncs == 0
    appender.close()


async def test_a_cancelled_waiter_does_not_spoil_the_others(tmp_path: Path) -> None:
    """A task cancelled while its line is on the way leaves the other waiters of the batch whole."""
    appender = Appender(tmp_path / "j")
    first, second = (appender.append(f"{i}\n".encode(), durable=True) for i in range(2))
    assert isinstance(first, asyncio.Future) and isinstance(second, asyncio.Future)
    first.cancel()
    await second
    assert second.result() is None
    appender.close()
    assert (tmp_path / "j").read_text().split() == ["0", "1"]


def test_a_loop_closed_before_its_lines_are_on_disk_loses_none(tmp_path: Path) -> None:
    """Lines appended on a loop that ends (and is closed) before they are written: close()
    still writes them all, and the thread's late callback to the closed loop is no error."""
    appender = Appender(tmp_path / "j")

    async def append_and_leave() -> None:
        for i in range(20):
            appender.append(f"{i}\n".encode(), durable=True)

    asyncio.run(append_and_leave())
    appender.close()
    assert (tmp_path / "j").read_text().split() == [str(i) for i in range(20)]


def test_two_loops_each_get_their_own_callbacks(tmp_path: Path) -> None:
    """Two threads' loops appending to one writer: every waiter is resolved on its own loop."""
    appender = Appender(tmp_path / "j")
    seen: dict[str, int] = {}

    async def append(name: str) -> None:
        waiters = [appender.append(f"{name}{i}\n".encode(), durable=True) for i in range(30)]
        for waiter in waiters:
            assert isinstance(waiter, asyncio.Future)
            await waiter
            assert waiter.get_loop() is asyncio.get_running_loop()
        seen[name] = len(waiters)

    threads = [threading.Thread(target=asyncio.run, args=(append(n),)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    appender.close()
    assert seen == {"a": 30, "b": 30}
    assert sorted((tmp_path / "j").read_text().split()) == sorted(
        f"{n}{i}" for n in "ab" for i in range(30)
    )


async def test_every_post_finds_its_intent_in_the_journal_and_intents_run_a_bounded_way_ahead(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """At each POST's start, the journal already holds an intent for it (every POST so far has
    one); at most 2 x `concurrency` jobs are between their intent and their POST's end (the
    POSTs out, and as many ready to go); no more than `concurrency` POSTs are out at once."""
    sim = await simulator_factory(**QUICK)
    path, concurrency = tmp_path / "run.journal", 3
    posts, out, most_out, unsent, open_intents = 0, 0, 0, [], []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        nonlocal posts, out, most_out
        if params.method == "POST":
            posts, out = posts + 1, out + 1
            most_out = max(most_out, out)
            intents = types_in(path).count("intent")
            unsent.append(intents - posts)
            open_intents.append(intents - (posts - out))

    async def on_end(_: Any, __: Any, params: Any) -> None:
        nonlocal out
        if params.method == "POST":
            out -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_end)
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        hr.HappyRobotClient(sim.api_key, sim.base_url, session=session) as client,
    ):
        report = await hr.run_batch(
            client,
            jobs_for(sim, 24),
            journal=path,
            concurrency=concurrency,
            poll_interval=0.02,
            max_poll_interval=0.05,
        )
    assert report.counts().get("error", 0) == 0 and posts == 24
    assert min(unsent) >= 0, "a POST left before its intent was in the journal"
    assert max(open_intents) <= 2 * concurrency
    assert most_out <= concurrency


async def test_every_job_has_intent_created_and_done_in_that_order(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A created record is not fsynced on its own, yet every job's reaches the journal,
    after its intent and before its done."""
    sim = await simulator_factory(**QUICK)
    path = tmp_path / "run.journal"
    async with hr.HappyRobotClient(sim.api_key, sim.base_url) as client:
        await hr.run_batch(
            client, jobs_for(sim, 12), journal=path, poll_interval=0.02, max_poll_interval=0.05
        )
    order: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] in ("intent", "created", "done"):
            order.setdefault(str(record["job"]), []).append(record["type"])
    assert len(order) == 12
    assert all(kinds == ["intent", "created", "done"] for kinds in order.values())


async def test_a_failed_write_nobody_waits_for_is_not_logged_as_never_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Durable lines on a full disk whose tasks stopped waiting: no "exception was never
    retrieved" noise from asyncio; close() still raises the disk's error."""
    appender = Appender(Path("/dev/full"))
    waiters = [appender.append(b"x\n", durable=True) for _ in range(3)]
    for _ in range(200):
        await asyncio.sleep(0.005)
        if all(w is not None and w.done() for w in waiters):
            break
    late = appender.append(b"y\n", durable=True)  # after the failure: failed at once
    assert late is not None and late.done()
    del waiters, late
    gc.collect()
    assert "never retrieved" not in caplog.text
    with pytest.raises(OSError, match="No space left"):
        appender.close()


async def test_a_relative_journal_path_survives_a_change_of_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal opened by a relative path, then the process changes folder: its lines still
    go to the same file and the removed-or-replaced check does not misfire."""
    monkeypatch.chdir(tmp_path)
    appender = Appender(Path("j"))
    first = appender.append(b"one\n", durable=True)
    assert isinstance(first, asyncio.Future)
    await first
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    second = appender.append(b"two\n", durable=True)
    assert isinstance(second, asyncio.Future)
    await second
    appender.close()
    assert (tmp_path / "j").read_text().split() == ["one", "two"]
