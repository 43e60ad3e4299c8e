"""Hostile review of issue #10's reshaping: CLI help (also under -OO), BatchOptions through the
CLI, the transport's ClientTimeout, the watcher's ChangeStreams, errors, imports.

Each test pins a behaviour a hostile review tried; what it found broken is fixed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import pickle
import re
import socket
import stat
import subprocess
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from conftest import Connect, Run, create_models, make_jobs, write_jobs

import happyrobot_async as hr
from happyrobot_async import cli
from happyrobot_async._handles import ChangeStream
from happyrobot_async.testing import Simulator
from happyrobot_async.testing._faults import FAULT_KINDS

PACKAGE = Path(hr.__file__).parent
FAST: hr.watcher.WatcherOptions = {"poll_interval": 0.01, "max_poll_interval": 0.02}


def _python(*argv: str, optimize: bool = False) -> subprocess.CompletedProcess[str]:
    flags = ["-OO"] if optimize else []
    return subprocess.run(
        [sys.executable, *flags, *argv], capture_output=True, text=True, timeout=60, check=False
    )


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return capsys.readouterr().out


@pytest.fixture
def connect(still_connect: Connect) -> Connect:
    """Simulators whose models move only when told."""
    return still_connect


# -- help text from docstrings ------------------------------------------------------------------


def test_raw_descriptions_keep_their_paragraphs_and_the_fault_list(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`batch --help` keeps its docstring's paragraphs and lines even on a wide terminal;
    `simulate --help` lists every fault kind; no command's help is just its summary line."""
    monkeypatch.setenv("COLUMNS", "200")
    batch = _help(capsys, "batch")
    assert "\nExit status: 0 when every job ended active, 1 when any did not (or --fail-fast\n" in (
        batch
    )
    assert "\n\nThe journal makes the batch crash-proof" in batch
    simulate = _help(capsys, "simulate")
    assert all(kind in simulate for kind in FAULT_KINDS)
    assert "fault routes: create, get, list" in simulate
    for name in ("batch", "wait", "simulate", "demo", "report", "status", "create", "list"):
        listed = re.search(rf"^    {name}\s+(\S.*)$", _help(capsys), re.M)
        assert listed is not None and listed.group(1) not in _help(capsys, name), name


def test_help_survives_python_oo() -> None:
    """Under `python -OO` the command list and each command's description are still shown."""
    top = _python("-m", "happyrobot_async", "--help", optimize=True)
    assert top.returncode == 0, top.stderr
    assert "Create and train every job of a jobs file" in top.stdout
    batch = _python("-m", "happyrobot_async", "batch", "--help", optimize=True)
    assert "Exit status: 0 when every job ended active" in batch.stdout


def test_python_oo_runs_every_help_without_a_crash() -> None:
    """`python -OO -m happyrobot_async X --help` exits 0 for every command (fault list too)."""
    for name in ("", "create", "get", "list", "wait", "batch", "status", "report", "demo"):
        done = _python("-m", "happyrobot_async", *([name] if name else []), "--help", optimize=True)
        assert done.returncode == 0 and "usage:" in done.stdout and not done.stderr, name
    simulate = _python("-m", "happyrobot_async", "simulate", "--help", optimize=True)
    assert all(kind in simulate.stdout for kind in FAULT_KINDS)


# -- batch options through the CLI ------------------------------------------------------------


async def test_a_max_poll_interval_below_the_poll_interval_is_a_usage_error(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`--max-poll-interval` below `--poll-interval` exits 2 naming it; nothing is created."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 3))
    argv = ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--view", "plain"]
    code, _, err = await run(*argv, "--poll-interval", "5", "--max-poll-interval", "1")
    assert code == 2 and "--max-poll-interval must be at least --poll-interval" in err
    assert sim.stats.models_created == 0 and sim.stats.total_requests == 0


async def test_a_tiny_poll_interval_without_a_max_finishes(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`--poll-interval 0.001` alone (the default max is derived from it) runs to the end."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 4))
    out = tmp_path / "out.csv"
    argv = ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--out", str(out)]
    code, stdout, _ = await run(*argv, "--poll-interval", "0.001", "--view", "plain")
    assert code == 0 and "4 job(s)" in stdout
    assert len(out.read_text().splitlines()) == 5  # header and a row per job


async def test_a_non_finite_poll_interval_is_refused(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`--poll-interval inf` is a usage error (exit 2), not a batch that never polls."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 1))
    argv = ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--dry-run"]
    for option in ("--poll-interval", "--max-poll-interval"):
        with pytest.raises(SystemExit) as exited:  # argparse refuses it
            await run(*argv, option, "inf")
        assert exited.value.code == 2, option


async def test_a_dry_run_refuses_what_the_run_refuses(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """A dry run with `--max-poll-interval` below `--poll-interval` exits 2 like the run."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 1))
    argv = ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--dry-run"]
    code, _, _ = await run(*argv, "--poll-interval", "5", "--max-poll-interval", "1")
    assert code == 2


async def test_demo_refuses_a_speed_that_cannot_run(run: Run, tmp_path: Path) -> None:
    """`demo --speed` -1, 0, inf or nan (or `--jobs 0`) is a usage error (exit 2), no traceback."""
    for option, value in (("--speed", "-1"), ("--speed", "0"), ("--speed", "inf"),
                          ("--speed", "nan"), ("--jobs", "0")):  # fmt: skip
        with pytest.raises(SystemExit) as exited:  # argparse refuses it
            await run("demo", option, value, "--view", "plain", "--report", str(tmp_path))
        assert exited.value.code == 2, (option, value)


async def test_watchers_and_batches_refuse_an_endless_poll_interval(
    sim: Simulator, tmp_path: Path
) -> None:
    """An infinite poll interval is refused, naming the field, before any request or journal."""
    async with hr.HappyRobotClient(sim.api_key, sim.base_url) as client:
        for options in ({"poll_interval": math.inf}, {"max_poll_interval": math.inf}):
            with pytest.raises(hr.InvalidRequestError, match=next(iter(options))):
                client.watcher(**options)
            with pytest.raises(hr.InvalidRequestError, match=next(iter(options))):
                await hr.run_batch(client, make_jobs(sim, 1), journal=tmp_path / "j", **options)
    assert sim.stats.total_requests == 0 and not (tmp_path / "j").exists()


async def test_out_through_a_symlink_writes_its_target(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`--out LINK` (e.g. /dev/stdout) writes through the link and leaves the link alone."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 2))
    target, link = tmp_path / "target.jsonl", tmp_path / "link.jsonl"
    link.symlink_to(target)
    argv = ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--out", str(link)]
    code, _, _ = await run(*argv, "--poll-interval", "0.01", "--view", "plain")
    assert code == 0 and link.is_symlink()
    assert [json.loads(line)["status"] for line in target.read_text().splitlines()] == [
        "active",
        "active",
    ]


async def test_out_that_is_a_fifo_gets_a_row_per_job_as_they_end(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`--out` naming a FIFO (like /dev/stdout) is streamed: one row per job, never replaced."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 3))
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the batch can open it at once
    try:
        argv = ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--out", str(fifo)]
        code, _, _ = await run(*argv, "--poll-interval", "0.01", "--view", "plain")
        lines = os.read(reader, 1 << 16).decode().splitlines()
    finally:
        os.close(reader)
    assert code == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(json.loads(line)["index"] for line in lines) == [0, 1, 2]


async def test_a_batch_whose_reader_left_ends_quietly(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`batch --view plain | head -1`: the batch stops with 141, no traceback, its journal
    saved; the rerun finishes every job, none created twice."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 6))
    argv = ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--view", "plain"]

    def batch_to_nobody() -> tuple[int, str]:
        with subprocess.Popen(
            [sys.executable, "-m", "happyrobot_async", *argv, "--poll-interval", "0.01"],
            env={**os.environ, "HAPPYROBOT_API_KEY": sim.api_key},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            assert process.stdout is not None and process.stderr is not None
            process.stdout.close()  # the reader is gone before anything is printed
            err = process.stderr.read()
        return process.returncode, err

    code, err = await asyncio.to_thread(batch_to_nobody)
    assert code == 141 and "Traceback" not in err, err[-2000:]
    assert "stopped (Broken pipe); journal" in err
    code, _, _ = await run(*argv, "--poll-interval", "0.01")
    assert code == 0
    assert sim.stats.models_created == 6 and sim.stats.duplicates == 0


# -- the transport's ClientTimeout ------------------------------------------------------------


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A local port whose listen backlog is full: a connect to it never completes."""
    server = socket.socket()
    fillers: list[socket.socket] = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_a_per_call_timeout_still_uses_the_connect_timeout() -> None:
    """get(timeout=), list(timeout=), create(timeout=) and with_options(timeout=) all keep
    `connect_timeout`: a connect that never completes is a connect timeout, never sent."""
    with unanswered_port() as port:
        url = f"http://127.0.0.1:{port}/api"
        async with hr.HappyRobotClient(
            "k" * 20, url, timeout=60, connect_timeout=0.2, max_retries=0
        ) as once:
            calls = [
                once.models.get("a" * 24, timeout=50),
                once.models.list(timeout=50),
                once.with_options(timeout=50).models.get("a" * 24),
                once.models.create(
                    use_case_id="u",
                    name="n",
                    from_model_id="b" * 24,
                    train_sample_ids=["s"],
                    test_sample_ids=["t"],
                    timeout=50,
                ),
            ]
            for call in calls:
                with pytest.raises(hr.APITimeoutError, match="connect timed out") as caught:
                    await asyncio.wait_for(call, 30)
                assert caught.value.request_sent is False


@pytest.mark.parametrize("field", ["timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), None])
def test_timeouts_are_refused_with_their_name(field: str, value: object) -> None:
    """A bad `timeout`/`connect_timeout` is an InvalidRequestError naming the field and value."""
    with pytest.raises(hr.InvalidRequestError, match=rf"^{field}: must be a positive") as caught:
        hr.HappyRobotClient("k" * 20, "http://127.0.0.1:9/api", **{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field and repr(value) in str(caught.value)


# -- change streams ---------------------------------------------------------------------------


async def test_change_streams_dropped_many_late_and_ended_by_the_client(connect: Connect) -> None:
    """A dropped stream is collected while changes flow and the others get every change;
    fifty streams being read all end when the client closes; a stream made afterwards is
    already over; aclose twice is harmless."""
    sim, client = await connect()
    models = await create_models(sim, client, 3)
    async with client.watcher(**FAST) as watcher:
        dropped = weakref.ref(watcher.changes())
        kept = watcher.changes()
        gc.collect()
        assert dropped() is None
        handles = [watcher.track(model) for model in models]
        for model in models:
            sim.set_status(model.id, "active")
        await asyncio.gather(*handles)
        assert (await anext(kept)).model.id in {model.id for model in models}

        async def drain(stream: ChangeStream) -> int:
            return sum([1 async for _ in stream])

        readers = [asyncio.create_task(drain(watcher.changes())) for _ in range(50)]
        late_model = (await create_models(sim, client, 1))[0]
        handle = watcher.track(late_model)
        await asyncio.sleep(0)
        await client.close()
        assert len(await asyncio.wait_for(asyncio.gather(*readers), 10)) == 50
        with pytest.raises(hr.WatcherClosedError, match="the client was closed"):
            await handle
        assert [change async for change in watcher.changes()] == []
        await watcher.aclose()
        await watcher.aclose()


# -- errors and imports -----------------------------------------------------------------------


class _OwnInit(hr.NotFoundError):
    def __init__(self, extra: int) -> None:
        super().__init__("gone", status_code=404)
        self.extra = extra


def test_errors_with_odd_arguments_survive_pickle() -> None:
    """No args, several args, notes, a 599 with an endless Retry-After, a subclass with its
    own __init__: class, args and every attribute survive each pickle protocol."""
    noted = hr.ServerError("m", status_code=599, retry_after=float("inf"))
    noted.add_note("seen twice")
    for error in (hr.HappyRobotError(), hr.HappyRobotError("a", 1, None), noted, _OwnInit(7)):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            copy = pickle.loads(pickle.dumps(error, protocol))
            assert type(copy) is type(error) and copy.args == error.args
            assert vars(copy) == vars(error)


def test_an_error_reachable_from_its_own_attributes_survives_pickle() -> None:
    """An error kept in a structure it refers to (job.error = e; e.job = job) keeps its
    attributes through pickle, as a plain ValueError does."""
    plain = ValueError("x")
    plain.box = [plain]  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(plain)).box[0] is not None
    error = hr.NotFoundError("gone", status_code=404)
    error.box = [error]  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps(error))
    assert copy.status_code == 404 and copy.box[0] is copy


def test_every_module_imports_alone() -> None:
    """Each module imports in a fresh interpreter of its own: no hidden import order."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] != "__main__":
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-W", "error", "-c", f"import {name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in names
    }
    failed = {}
    for name, process in processes.items():
        _, err = process.communicate(timeout=60)
        if process.returncode:
            failed[name] = err.decode()[-300:]
    assert len(names) > 40 and failed == {}
