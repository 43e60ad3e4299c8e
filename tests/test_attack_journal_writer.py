"""Attacks on the journal writer and on intents written ahead of their POSTs.

Hostile users and environments: kills and Ctrl-C inside the intent-to-POST window,
a full disk, cancellation, a journal removed or replaced by a FIFO, a journal shared
by event loops, huge and tiny concurrency, ambiguous POSTs. Each test pins one
attack; the last six found bugs, now fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

import pytest
from conftest import CliSimulator, cli_process, client_for, loop_in_a_thread, wait_until
from conftest import make_jobs as job_dicts
from conftest import write_jobs as write_jobs_file
from test_batch import QUICK, jobs_for

import happyrobot_async as hr
from happyrobot_async._journal_writer import Appender
from happyrobot_async.journal import Journal, states_summary
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

ROOT = Path(__file__).resolve().parent.parent


class Poll(TypedDict):
    poll_interval: float
    max_poll_interval: float


POLL: Poll = {"poll_interval": 0.02, "max_poll_interval": 0.05}
SIM: dict[str, Any] = {"failure_rate": 0.0, **QUICK}
NOISE = ("never retrieved", "Task exception", "Traceback")
LOST = ("never retrieved", "Task exception")  # asyncio's words for a future nobody awaited


def types_of(path: Path) -> Counter[str]:
    """Record types of the journal's whole lines."""
    lines = path.read_bytes().split(b"\n")[:-1]
    return Counter(json.loads(line)["type"] for line in lines if line.strip())


def intents_of(path: Path) -> Counter[str]:
    """Intents per job key in the journal's whole lines."""
    lines = [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1] if line.strip()]
    return Counter(r["job"][0] for r in lines if r["type"] == "intent")


async def rerun_creates_each_once(sim: Simulator, jobs: list[hr.TrainingJob], path: Path) -> None:
    """Once the server is quiet, a rerun with the journal ends every job with one model."""
    await wait_until(lambda: sim.stats.in_flight == 0, timeout=5)
    async with client_for(sim) as client:
        report = await hr.run_batch(client, jobs, journal=path, concurrency=4, **POLL)
    assert report.counts() == {"active": len(jobs)}
    assert sim.stats.models_created == len(jobs) and sim.stats.duplicates == 0


# -- kills and Ctrl-C in the window between an intent and its POST ----------------------


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["KILL", "INT"])
async def test_a_batch_stopped_with_intents_written_ahead_resumes_without_a_second_model(
    cli_simulator: CliSimulator, tmp_path: Path, signum: int
) -> None:
    """SIGKILL or Ctrl-C while POSTs are out and more intents wait for a slot: Ctrl-C exits
    130 with no traceback; the journal reads back; the rerun creates each model once."""
    sim = await cli_simulator(seed=8, **SIM)
    sim.faults = [Fault("latency", delay=0.3, route="create")]
    dicts = job_dicts(sim, 8, prefix=f"sig{signum}")
    path = tmp_path / "j"
    jobs_file = write_jobs_file(tmp_path / "jobs.jsonl", dicts)
    argv = ["batch", str(jobs_file), "--journal", str(path), "--concurrency", "2"]
    child = await cli_process(sim, *argv, "--view", "plain", "--poll-interval", "0.02")
    await wait_until(lambda: path.exists() and types_of(path)["intent"] >= 4, timeout=10)
    child.send_signal(signum)
    _, err = await asyncio.wait_for(child.communicate(), 10)
    if signum == signal.SIGINT:
        assert child.returncode == 130 and not any(n in err.decode() for n in NOISE), err
    jobs = [hr.TrainingJob(**d) for d in dicts]
    with Journal.open(path, jobs, readonly=True) as journal:  # POSTs out, and as many ahead
        assert 2 <= states_summary(journal, jobs)["sent"] <= 2 * 2
    await rerun_creates_each_once(sim, jobs, path)


#: `batch` with files capped at argv[1] bytes (RLIMIT_FSIZE): the journal fills up mid-run.
CAPPED_BATCH = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
from happyrobot_async.cli import main
try:
    code = main(sys.argv[2:])
finally:  # what writes at exit (coverage's data file) is not the journal: space again
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
sys.exit(code)
"""


@pytest.mark.parametrize("limit", [700, 2500, 6000])
async def test_a_journal_that_fills_up_mid_run_stops_cleanly_and_the_rerun_resumes(
    cli_simulator: CliSimulator, tmp_path: Path, limit: int
) -> None:
    """The disk fills up (EFBIG) with intents written ahead and waiters in tasks that get
    cancelled: exit 2, one line naming the journal, no traceback and no 'never retrieved';
    the torn last line is dropped and the rerun creates every model once."""
    sim = await cli_simulator(seed=9, **SIM)
    sim.faults = [Fault("latency", delay=0.05, route="create")]
    dicts = job_dicts(sim, 12, prefix=f"full{limit}")
    path, jobs_file = tmp_path / "j", write_jobs_file(tmp_path / "jobs.jsonl", dicts)
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", CAPPED_BATCH, str(limit), "batch", str(jobs_file)),
        *("--journal", str(path), "--concurrency", "3", "--view", "plain"),
        *("--poll-interval", "0.02", "--base-url", sim.base_url),
        cwd=ROOT,
        env={**os.environ, "HAPPYROBOT_API_KEY": sim.api_key},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(child.communicate(), 15)
    assert child.returncode == 2, err
    assert f"cannot write journal {path}" in err.decode()
    assert not any(n in err.decode() for n in NOISE), err
    await rerun_creates_each_once(sim, [hr.TrainingJob(**d) for d in dicts], path)


# -- cancellation, reuse, scale, ambiguous POSTs: what held -----------------------------


async def test_cancelling_run_batch_with_intents_ahead_is_quiet_and_the_rerun_resumes(
    simulator_factory: SimulatorFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """task.cancel() while POSTs are out and intents wait for slots: it ends at once, asyncio
    logs nothing about lost futures, the lock is free, and a rerun in the same process (the
    same path, twice in a row) creates each model once."""
    sim = await simulator_factory(seed=4, failure_rate=0.0, **QUICK)
    sim.faults = [Fault("latency", delay=0.3, route="create")]
    jobs, path = jobs_for(sim, 10, prefix="cancel"), tmp_path / "j"
    async with client_for(sim) as client:
        task = asyncio.create_task(hr.run_batch(client, jobs, journal=path, concurrency=2, **POLL))
        await wait_until(lambda: path.exists() and types_of(path)["intent"] >= 4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)
    gc.collect()
    await asyncio.sleep(0.05)
    assert not any(n in caplog.text for n in LOST), caplog.text
    sim.faults = []
    await rerun_creates_each_once(sim, jobs, path)
    await rerun_creates_each_once(sim, jobs, path)  # finished: touches nothing


async def test_ambiguous_posts_with_intents_ahead_never_create_twice(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """Half the POSTs store their model and then lose the answer (dropped, 500, 504) while
    later intents are on disk ahead of their POSTs: still one model per job."""
    sim = await simulator_factory(seed=5, failure_rate=0.0, **QUICK)
    sim.faults = [
        Fault("commit_then_fail", 0.2, then="drop"),
        Fault("commit_then_fail", 0.2, then=500),
        Fault("commit_then_fail", 0.1, then=504),
        Fault("latency", delay=0.02, route="create"),
    ]
    jobs = jobs_for(sim, 16, prefix="amb")
    async with client_for(sim) as client:
        report = await hr.run_batch(client, jobs, journal=tmp_path / "j", concurrency=2, **POLL)
    assert report.counts() == {"active": 16}
    assert sim.stats.models_created == 16 and sim.stats.duplicates == 0


@pytest.mark.parametrize(("count", "concurrency"), [(1000, 5000), (60, 1)])
async def test_huge_and_tiny_concurrency_keep_every_job_in_order(
    simulator_factory: SimulatorFactory, tmp_path: Path, count: int, concurrency: int
) -> None:
    """1,000 jobs at concurrency 5,000 (every intent at once) and concurrency 1 (one ahead):
    each job has intent, created, done in that order, and fsyncs are far fewer than lines."""
    sim = await simulator_factory(seed=6, failure_rate=0.0, **QUICK)
    jobs, path = jobs_for(sim, count, prefix="scale"), tmp_path / "j"
    with Journal.open(path, jobs) as journal:
        async with client_for(sim) as client:
            report = await hr.run_batch(
                client, jobs, journal=journal, concurrency=concurrency, **POLL
            )
        fsyncs = journal.fsyncs
    assert report.counts() == {"active": count} and sim.stats.duplicates == 0
    order: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] in ("intent", "created", "done"):
            order.setdefault(record["job"][0], []).append(record["type"])
    assert len(order) == count
    assert all(kinds == ["intent", "created", "done"] for kinds in order.values())
    assert fsyncs < 2 * count


# -- found by this attack, now fixed ----------------------------------------------------


def test_a_journal_reused_after_its_event_loop_ended_mid_write_does_not_hang(
    tmp_path: Path,
) -> None:
    """A Journal object outlives an event loop that ended while its batch was with the
    thread (asyncio.run ended by a timeout or Ctrl-C around run_batch(journal=journal)):
    the next loop's intent still reaches the disk."""
    jobs = offline_jobs(2)
    with Journal.open(tmp_path / "j", jobs) as journal:

        async def first() -> None:
            journal.intent(jobs[0])  # durable: a batch goes to the thread
            await asyncio.sleep(0)  # handed over
            journal.created(jobs[0], "0" * 24)  # held behind it

        loop = asyncio.new_event_loop()
        loop.run_until_complete(first())
        loop.close()  # before the thread's callback: it is dropped

        async def second() -> None:
            await asyncio.wait_for(journal.wait(journal.intent(jobs[1])), 1.0)

        asyncio.run(second())


async def test_two_loops_interleaving_on_one_writer_both_get_their_waiters(
    tmp_path: Path,
) -> None:
    """Loop A has a batch out and a line held; loop B (another thread) appends a durable
    line meanwhile: once A's batch is back, B's waiter is resolved too."""
    appender = Appender(tmp_path / "j")
    try:
        with loop_in_a_thread() as other:
            first = appender.append(b"a1\n", durable=True)
            await asyncio.sleep(0)  # A's batch is with the thread
            appender.append(b"a2\n", durable=False)  # held behind it

            async def append_there() -> Any:
                return appender.append(b"b1\n", durable=True)

            theirs = asyncio.run_coroutine_threadsafe(append_there(), other).result(5)
            assert isinstance(first, asyncio.Future)
            await first

            async def wait_there() -> None:
                await asyncio.wait_for(theirs, 1.0)

            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wait_there(), other))
    finally:
        appender.close()


async def test_while_lookups_hold_the_slots_at_most_concurrency_intents_run_ahead(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """README: intents are written while earlier POSTs are out, at most `concurrency` ahead.
    A rerun whose slots are all busy with lookups (2 s each) sends no POST for a while; a
    kill then must not leave more than `concurrency` new jobs 'sent but unconfirmed' (each
    costs the next run a lookup, and jobs changed meanwhile are refused)."""
    sim = await simulator_factory(seed=7, failure_rate=0.0, **QUICK)
    jobs, path, concurrency = jobs_for(sim, 12, prefix="ahead"), tmp_path / "j", 2
    with Journal.open(path, jobs) as journal:  # a killed run: 2 POSTs sent, unconfirmed
        for job in jobs[:2]:
            await journal.wait(journal.intent(job))
    async with hr.HappyRobotClient(sim.api_key, sim.base_url) as client:  # lookups: 2 s
        task = asyncio.create_task(
            hr.run_batch(client, jobs, journal=path, concurrency=concurrency, **POLL)
        )
        await asyncio.sleep(0.8)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sim.stats.count("create") == 0  # no POST left in this run
    new = [key for key in intents_of(path) if key not in ("k0", "k1")]
    assert len(new) <= concurrency, f"{len(new)} jobs marked sent, none POSTed"


async def test_a_journal_removed_mid_run_is_reported(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """The journal file is deleted mid-run (a cleanup job, a wrong rm): the run must stop
    with a JournalError (it used to report success, and the rerun created every model again)."""
    sim = await simulator_factory(seed=10, failure_rate=0.0, **QUICK)
    sim.faults = [Fault("latency", delay=0.05, route="create")]
    jobs, path = jobs_for(sim, 6, prefix="gone"), tmp_path / "j"

    async def remove() -> None:
        await wait_until(lambda: sim.stats.models_created >= 2)
        path.unlink()

    remover = asyncio.create_task(remove())
    async with client_for(sim) as client:
        with pytest.raises(hr.JournalError, match="removed or replaced while the batch ran"):
            await hr.run_batch(client, jobs, journal=path, concurrency=2, **POLL)
    await remover


def test_a_journal_path_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """--journal pointing at a FIFO (a named pipe left by a script): refused with a
    JournalError within a second, instead of blocking until someone writes to the pipe."""
    path = tmp_path / "j"
    os.mkfifo(path)
    jobs = offline_jobs(1)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_try_open(path, jobs)), daemon=True)
    thread.start()
    thread.join(1.0)
    hung = thread.is_alive()
    while thread.is_alive():  # unblock the reader: open and close the pipe's write end
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(0.01)
    for result in outcome:
        if isinstance(result, Journal):
            result.close()
    assert not hung, "Journal.open blocked on the FIFO"
    assert isinstance(outcome[0], hr.JournalError)


async def test_run_batch_with_a_closed_journal_is_a_plain_error(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A Journal closed too early (its `with` block ended) handed to run_batch: a
    JournalError before anything is sent, not an ExceptionGroup of RuntimeErrors."""
    sim = await simulator_factory(seed=11, failure_rate=0.0, **QUICK)
    jobs = jobs_for(sim, 3, prefix="closed")
    with Journal.open(tmp_path / "j", jobs) as journal:
        pass
    async with client_for(sim) as client:
        with pytest.raises(hr.JournalError):
            await hr.run_batch(client, jobs, journal=journal, **POLL)
    assert sim.stats.count("create") == 0


async def test_a_journal_moved_away_mid_run_stops_the_run_and_says_to_put_it_back(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """The journal renamed mid-run (still linked, but no longer at its path): the run stops
    with a JournalError telling to put the file back, since a rerun reads that path."""
    sim = await simulator_factory(seed=12, failure_rate=0.0, **QUICK)
    sim.faults = [Fault("latency", delay=0.05, route="create")]
    jobs, path = jobs_for(sim, 6, prefix="moved"), tmp_path / "j"

    async def move() -> None:
        await wait_until(lambda: sim.stats.models_created >= 2)
        path.rename(tmp_path / "elsewhere")

    mover = asyncio.create_task(move())
    async with client_for(sim) as client:
        with pytest.raises(hr.JournalError, match="Put the file back before rerunning"):
            await hr.run_batch(client, jobs, journal=path, concurrency=2, **POLL)
    await mover
    assert sim.stats.count("create") < 6


async def test_a_new_journal_behind_a_symlink_keeps_the_link(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A journal path that is a symlink to an empty file: the header and every record go to
    the file it points to, and the link stays a link (the rerun through it resumes)."""
    sim = await simulator_factory(seed=13, failure_rate=0.0, **QUICK)
    jobs, target, link = jobs_for(sim, 3, prefix="link"), tmp_path / "real", tmp_path / "j"
    target.touch()
    link.symlink_to(target)
    async with client_for(sim) as client:
        await hr.run_batch(client, jobs, journal=link, **POLL)
    assert link.is_symlink() and types_of(target)["done"] == 3
    await rerun_creates_each_once(sim, jobs, link)


# -- helpers ------------------------------------------------------------------------------


def offline_jobs(count: int) -> list[hr.TrainingJob]:
    """Valid jobs for a journal alone (no server is asked)."""
    return [
        hr.TrainingJob(
            use_case_id="u" * 12,
            name=f"offline-{n}",
            from_model_id="b" * 24,
            train_sample_ids=["t"],
            test_sample_ids=["e"],
            key=f"k{n}",
        )
        for n in range(count)
    ]


def _try_open(path: Path, jobs: list[hr.TrainingJob]) -> object:
    try:
        return Journal.open(path, jobs)
    except (hr.JournalError, OSError) as exc:
        return exc
