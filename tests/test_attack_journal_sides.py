"""Second attack on the journal writer: per-loop sides, the gone-file check, error paths.

Loops that end, stop or close while a batch is out; close() on the loop and from another
thread; a journal reached by symlinks, a hard link, a bind mount, a relative name; one
removed under the command line; odd paths; the intent window at concurrency 1 with
lookups, retries and a deadline. The last three found bugs, now fixed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import FAST, CliSimulator, cli_process, client_for, loop_in_a_thread, wait_until
from conftest import make_jobs as job_dicts
from conftest import simulator_in_a_thread as threaded_simulator
from conftest import write_jobs as write_jobs_file
from test_attack_journal_writer import LOST, NOISE, POLL, SIM, offline_jobs, types_of
from test_batch import QUICK, jobs_for

import happyrobot_async as hr
from happyrobot_async._journal_writer import Appender
from happyrobot_async.journal import Journal
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


def durable(appender: Appender, line: bytes) -> list[asyncio.Future[None]]:
    waiter = appender.append(line, durable=True)
    return [waiter] if isinstance(waiter, asyncio.Future) else []


def lines_of(path: Path) -> list[str]:
    return path.read_text().split()


async def models_made(sim: Simulator, count: int) -> None:
    await wait_until(lambda: sim.stats.models_created >= count)


async def run(sim: Simulator, jobs: list[hr.TrainingJob], **options: Any) -> hr.BatchReport:
    async with client_for(sim, retry_policy=options.pop("policy", FAST)) as client:
        report: hr.BatchReport = await hr.run_batch(client, jobs, **POLL, **options)
    return report


# -- per-loop sides: loops that end, stop or close with a batch out ---------------------


def test_a_held_intent_of_an_ended_loop_does_not_reopen_a_job_finished_later(
    tmp_path: Path,
) -> None:
    """A Journal reused after its loop ended (stopped, then closed before the thread's
    callback ran) with job 1's intent held: the next run finishes job 1; that old intent
    must not land after its `done` (it did, at close(): the rerun reopened the job and
    its lookup found only a model of its history, an error on every rerun)."""
    with threaded_simulator(seed=21, **SIM) as (sim, stats):
        jobs, path = jobs_for(sim, 2, prefix="strand"), tmp_path / "j"
        with Journal.open(path, jobs) as journal:

            async def first() -> None:
                journal.intent(jobs[0])
                await asyncio.sleep(0)  # its batch is with the thread
                journal.intent(jobs[1])  # held behind it

            loop = asyncio.new_event_loop()
            loop.run_until_complete(first())
            time.sleep(0.2)  # the thread has written and called back the stopped loop
            loop.close()
            assert asyncio.run(run(sim, jobs, journal=journal)).counts() == {"active": 2}
            on_disk = types_of(path)  # every `done` is fsynced: nothing may be left behind
        assert asyncio.run(run(sim, jobs, journal=path)).counts() == {"active": 2}
        assert stats().models_created == 2 and on_disk == types_of(path)


def test_a_loop_stopped_not_closed_gets_its_held_lines_written_by_close(tmp_path: Path) -> None:
    """A loop stopped with a batch out and lines held, never closed: close() writes the held
    lines once, in order; the loop run again later resolves the waiters."""
    appender, waiters = Appender(tmp_path / "j"), list[asyncio.Future[None]]()

    async def first() -> None:
        waiters.extend(durable(appender, b"1\n"))
        await asyncio.sleep(0)
        waiters.extend(durable(appender, b"2\n"))
        appender.append(b"3\n", durable=False)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first())
        time.sleep(0.1)
        appender.close()
        assert lines_of(tmp_path / "j") == ["1", "2", "3"]
        waited = asyncio.wait_for(asyncio.gather(*waiters), 1)
        assert loop.run_until_complete(waited) == [None, None]
    finally:
        loop.close()


async def test_close_inside_the_loop_with_a_batch_out_resolves_every_waiter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Journal.close() on the loop (a `with` block ending) while a batch is out and lines
    are held: every line is written once, every waiter resolves, nothing is logged."""
    jobs = offline_jobs(3)
    journal = Journal.open(tmp_path / "j", jobs)
    first = journal.intent(jobs[0])
    await asyncio.sleep(0)
    held = [journal.intent(jobs[1]), journal.done(jobs[2], None, "refused")]
    journal.close()
    for waiter in [first, *held]:
        await asyncio.wait_for(journal.wait(waiter), 1)
    with pytest.raises(hr.JournalError, match="closed"):
        journal.intent(jobs[2])
    gc.collect()
    await asyncio.sleep(0.01)
    assert types_of(tmp_path / "j") == {"header": 1, "intent": 2, "done": 1}
    assert not any(n in caplog.text for n in LOST), caplog.text


async def pump(appender: Appender, accepted: list[int]) -> None:
    """Append 400 lines (every third durable), yielding now and then; await the waiters."""
    waiters: list[asyncio.Future[None]] = []
    for i in range(400):
        try:
            waiter = appender.append(f"{i}\n".encode(), durable=i % 3 == 0)
        except hr.JournalError:
            break
        accepted.append(i)
        if isinstance(waiter, asyncio.Future):
            waiters.append(waiter)
        if i % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*waiters), 2)


async def test_close_from_another_thread_while_a_loop_appends_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """A loop in a thread keeps appending (batches out, lines held) while this thread closes
    the writer: each line accepted is in the file once, in order, every waiter resolves,
    and appends after close() are refused. Twenty times, at different moments."""
    for attempt in range(20):
        appender, accepted = Appender(tmp_path / f"j{attempt}"), list[int]()
        with loop_in_a_thread() as other:
            running = asyncio.run_coroutine_threadsafe(pump(appender, accepted), other)
            await asyncio.sleep(0.001 * (attempt % 5))
            await asyncio.to_thread(appender.close)
            await asyncio.wrap_future(running)
        assert lines_of(tmp_path / f"j{attempt}") == [str(i) for i in accepted]


async def leave_lines_held(appender: Appender) -> None:
    appender.append(b"a\n", durable=True)
    await asyncio.sleep(0)  # out
    for i in range(50):
        appender.append(f"{i}\n".encode(), durable=True)  # held


def test_a_closed_loops_held_lines_written_by_the_thread_and_by_close_go_once(
    tmp_path: Path,
) -> None:
    """The loop is closed while its batch is out: the thread writes its held lines itself
    while close() (another thread) sends them too. Each line once, in order, 30 times over."""
    for attempt in range(30):
        appender, loop = Appender(tmp_path / f"j{attempt}"), asyncio.new_event_loop()
        loop.run_until_complete(leave_lines_held(appender))
        loop.close()
        closer = threading.Thread(target=appender.close)
        time.sleep(0.0002 * (attempt % 10))
        closer.start()
        closer.join(5)
        assert lines_of(tmp_path / f"j{attempt}") == ["a", *map(str, range(50))]


# -- the gone-file check: no false positive; what a removal says ------------------------


def shell(command: str) -> int:
    return subprocess.run(command.split(), capture_output=True, check=False).returncode


ALIASES = ["folder_symlink", "file_symlink", "hard_link", "bind_mount", "relative_then_chdir"]


@pytest.mark.parametrize("alias", [*ALIASES, "folder_renamed"])
async def test_a_healthy_journal_reached_another_way_is_not_called_gone(
    simulator_factory: SimulatorFactory, tmp_path: Path, alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal reached through a symlinked folder, a symlink to the file, a bind mount,
    given a second name mid-run (`ln`, a backup), or named relatively by a program that
    changes folder mid-run (stopped as "removed" until a94e4b7): the batch completes. Its
    folder renamed mid-run: the path names nothing, so it stops, saying to put it back."""
    sim = await simulator_factory(seed=22, failure_rate=0.0, **QUICK)
    sim.faults = [Fault("latency", delay=0.02, route="create")]
    jobs, real, journal = jobs_for(sim, 4, prefix=alias), tmp_path / "real", tmp_path / "real/j"
    real.mkdir()
    if alias == "folder_symlink":
        (tmp_path / "link").symlink_to(real)
        journal = tmp_path / "link" / "j"
    elif alias == "file_symlink":
        (journal := tmp_path / "j").symlink_to(real / "target")
    elif alias == "bind_mount":
        (tmp_path / "bound").mkdir()
        if await asyncio.to_thread(shell, f"mount --bind {real} {tmp_path}/bound"):
            pytest.skip("cannot bind mount here")
        journal = tmp_path / "bound" / "j"
    elif alias == "relative_then_chdir":
        monkeypatch.chdir(real)
        journal = Path("j")

    async def meddle() -> None:
        await models_made(sim, 1)
        if alias == "hard_link":
            os.link(real / "j", tmp_path / "backup")
        elif alias == "relative_then_chdir":
            os.chdir(tmp_path)
        elif alias == "folder_renamed":
            real.rename(tmp_path / "old")

    meddler = asyncio.create_task(meddle())
    try:
        report = await run(sim, jobs, journal=journal, concurrency=1)
    except hr.JournalError as exc:
        assert alias == "folder_renamed" and "Put the file back" in str(exc), exc
        return
    finally:
        await meddler
        if alias == "bind_mount":
            await asyncio.to_thread(shell, f"umount {tmp_path}/bound")
    assert alias in ALIASES and report.counts() == {"active": 4} and sim.stats.duplicates == 0


async def test_two_runners_on_one_journal_by_a_symlink_are_refused(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """One runner has run.journal, a second is given latest -> run.journal: one runner per
    journal, so the second is refused (it ran, and every model was created twice)."""
    sim = await simulator_factory(seed=24, failure_rate=0.0, **QUICK)
    sim.faults = [Fault("latency", delay=0.1, route="create")]
    jobs, path, link = jobs_for(sim, 3, prefix="alias"), tmp_path / "run.journal", tmp_path / "l"
    link.symlink_to(path.name)
    first = asyncio.create_task(run(sim, jobs, journal=path))
    await asyncio.sleep(0.05)
    second = await asyncio.gather(run(sim, jobs, journal=link), return_exceptions=True)
    await first
    assert isinstance(second[0], hr.JournalError) and sim.stats.duplicates == 0


async def test_the_cli_on_a_journal_removed_mid_run_exits_2_in_one_line_and_status_says_so(
    cli_simulator: CliSimulator, tmp_path: Path
) -> None:
    """`batch --journal J` with J deleted mid-run: exit 2, one line naming J and saying to
    put it back, no traceback; `status --journal J` then exits 2: J cannot be read."""
    sim = await cli_simulator(seed=26, **SIM)
    sim.faults = [Fault("latency", delay=0.05, route="create")]
    path, jobs_file = tmp_path / "j", write_jobs_file(tmp_path / "jobs.jsonl", job_dicts(sim, 8))
    argv = ["batch", str(jobs_file), "--journal", str(path), "--concurrency", "2"]
    child = await cli_process(sim, *argv, "--view", "plain", "--poll-interval", "0.02")
    await models_made(sim, 1)
    path.unlink()
    _, err = await asyncio.wait_for(child.communicate(), 10)
    text = err.decode()
    assert child.returncode == 2, text
    assert f"journal {path} was removed or replaced" in text and "Put the file back" in text
    assert not any(n in text for n in NOISE), text
    status = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "status", "--journal", str(path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(status.communicate(), 10)
    assert status.returncode == 2 and f"cannot read journal {path}" in err.decode(), err
    assert not path.exists()  # nothing recreated it: the rerun is the user's call


@pytest.mark.parametrize("kind", ["directory", "dangling", "fifo_link", "dev_null"])
def test_journal_open_on_odd_paths(tmp_path: Path, kind: str) -> None:
    """A directory, a symlink to a FIFO and /dev/null are refused at once; a dangling symlink
    creates the file it points to (header included) and stays a link."""
    path, jobs = tmp_path / "j", offline_jobs(1)
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo_link":
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    elif kind == "dev_null":
        path = Path(os.devnull)
    else:
        path.symlink_to(tmp_path / "target")
        with Journal.open(path, jobs) as journal:
            journal.intent(jobs[0])
        assert path.is_symlink() and types_of(tmp_path / "target") == {"header": 1, "intent": 1}
        return
    with pytest.raises(hr.JournalError, match="not a regular file"):
        Journal.open(path, jobs)


# -- the runner's intent window: nothing waits forever ----------------------------------


@pytest.mark.parametrize("retry_failed", [False, True])
async def test_concurrency_1_with_lookups_retries_and_new_jobs_mixed_ends(
    simulator_factory: SimulatorFactory, tmp_path: Path, retry_failed: bool
) -> None:
    """Concurrency 1 under 5xx, drops and ambiguous POSTs (retries, lookups), with eight jobs
    left sent-unconfirmed by a killed run beside eight new ones, or with failed trainings
    retried: it ends, with one model per job per attempt."""
    sim = await simulator_factory(seed=27, failure_rate=0.5 if retry_failed else 0.0, **QUICK)
    jobs, path, failed = jobs_for(sim, 16, prefix=f"mix{retry_failed}"), tmp_path / "j", 0
    if retry_failed:
        failed = (await run(sim, jobs, journal=path, concurrency=8)).counts()["failed"]
    else:
        with Journal.open(path, jobs) as journal:  # a killed run left these POSTs unconfirmed
            for job in jobs[::2]:
                await journal.wait(journal.intent(job))
    sim.faults = [
        Fault("server_error", 0.2, route="create"),
        Fault("drop", 0.1),
        Fault("commit_then_fail", 0.2, then=504),
    ]
    policy = attrs.evolve(FAST, clock_skew=2.5)  # a retry waits 3.5 s, not 11 (see the last)
    report = await asyncio.wait_for(
        run(sim, jobs, journal=path, concurrency=1, retry_failed=retry_failed, policy=policy),
        20,
    )
    assert all(r.error is None and r.model is not None for r in report.results), report
    assert sim.stats.models_created == 16 + failed


async def test_a_deadline_with_every_post_failing_ends_every_job_without_a_hang(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """Concurrency 1, every POST a 503, a 0.5 s deadline: jobs holding the intent window and
    jobs backing off all end soon, as errors left open in the journal."""
    sim = await simulator_factory(seed=28, failure_rate=0.0, **QUICK)
    sim.faults = [Fault("server_error", 1.0, route="create", status=503)]
    jobs = jobs_for(sim, 6, prefix="dl")
    report = await asyncio.wait_for(
        run(sim, jobs, journal=tmp_path / "j", concurrency=1, deadline=0.5), 10
    )
    assert all(r.error is not None and r.open for r in report.results)
    assert sim.stats.models_created == 0


async def test_retry_failed_with_a_small_clock_skew_never_adopts_the_failed_model(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """retry_failed rerun right after a failed training, clock_skew=0 (a synced server), the
    retry's POST stored then answered 504: its reconcile must adopt the new model, not the
    failed one (it did: the job 'retried' into its old model; the new one is unknown)."""
    sim = await simulator_factory(seed=29, failure_rate=1.0, **QUICK)
    jobs, path, policy = (
        jobs_for(sim, 1, prefix="skew"),
        tmp_path / "j",
        attrs.evolve(FAST, clock_skew=0.0),
    )
    old = (await run(sim, jobs, journal=path, policy=policy)).results[0].model
    sim.faults = [Fault("commit_then_fail", 1.0, then=504)]
    again = await run(sim, jobs, journal=path, retry_failed=True, policy=policy)
    assert old is not None and sim.stats.models_created == 2
    assert again.results[0].model is not None and again.results[0].model.id != old.id
