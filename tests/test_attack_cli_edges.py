"""Hostile review of the broken-pipe exit, `--out` through links and streams, finite poll
intervals, the gate's cancels and pickled error cycles: the environment and user at their worst.

Each test pins a behaviour a hostile review tried; what it found broken is fixed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import pickle
import random
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CliSimulator, Run, make_jobs, wait_until, write_jobs
from test_errors import CREATE, EXAMPLES

import happyrobot_async as hr
from happyrobot_async._gate import Gate
from happyrobot_async.testing import Simulator

FAST = ("--poll-interval", "0.01", "--view", "plain")


def _batch(sim: Simulator, tmp_path: Path, count: int, *extra: str) -> list[str]:
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, count))
    return ["batch", str(jobs), "--journal", str(tmp_path / "j"), *FAST, *extra]


def _python(argv: list[str], sim: Simulator, **popen: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HAPPYROBOT_API_KEY": sim.api_key, "HAPPYROBOT_BASE_URL": sim.base_url}
    return subprocess.Popen([sys.executable, "-m", "happyrobot_async", *argv], env=env, **popen)


def _to_nobody(argv: list[str], sim: Simulator, *, close_stderr: bool = False) -> tuple[int, str]:
    """Run with stdout (and maybe stderr) a pipe whose reader left before anything came."""
    with _python(argv, sim, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        if close_stderr:
            process.stderr.close()
        err = "" if close_stderr else process.stderr.read().decode()
        return process.wait(timeout=60), err


@pytest.fixture
async def still(cli_simulator: CliSimulator) -> Simulator:
    """A simulator whose models move only when told."""
    return await cli_simulator(seed=3, speed=0.0, failure_rate=0.0)


def _created(sim: Simulator) -> list[str]:
    return [model.id for model in sim.models if not model.is_base]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C even if this process ignores it


# -- --out through symlinks ------------------------------------------------------------------


async def test_out_through_dangling_and_relative_symlinks_writes_their_targets(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """A dangling link gets its file created; `sub/out.jsonl -> ../target.jsonl` resolves from
    the link's folder (not the cwd); both links stay links."""
    (tmp_path / "sub").mkdir()
    for link, target in (
        (tmp_path / "dangling.jsonl", tmp_path / "later.jsonl"),
        (tmp_path / "sub" / "out.jsonl", Path("..") / "target.jsonl"),
    ):
        link.symlink_to(target)
        code, _, _ = await run(*_batch(sim, tmp_path, 2, "--out", str(link)))
        assert code == 0 and link.is_symlink()
        assert len((link.parent / target).read_text().splitlines()) == 2


async def test_out_through_a_symlink_into_a_missing_folder_is_refused_first(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """A link into a folder that does not exist: exit 2 naming it, nothing sent."""
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "nowhere" / "out.jsonl")
    code, _, err = await run(*_batch(sim, tmp_path, 2, "--out", str(link)))
    assert code == 2 and "does not exist" in err and sim.stats.total_requests == 0


async def test_out_that_is_a_symlink_loop_is_refused_before_anything_is_sent(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`--out a` with a -> b -> a: a usage error before any request, like a missing folder."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    code, _, _ = await run(*_batch(sim, tmp_path, 2, "--out", str(tmp_path / "a")))
    assert code == 2 and sim.stats.models_created == 0


@pytest.mark.parametrize("which", ["journal", "journal-link", "jobs"])
async def test_out_naming_the_journal_or_the_jobs_is_refused(
    sim: Simulator, run: Run, tmp_path: Path, which: str
) -> None:
    """`--out` that is the journal or the jobs file: exit 2 before anything is sent."""
    argv = _batch(sim, tmp_path, 2)
    out = tmp_path / ("jobs.jsonl" if which == "jobs" else "j")
    if which == "journal-link":
        (tmp_path / "link").symlink_to(out)
        out = tmp_path / "link"
    code, _, _ = await run(*argv, "--out", str(out))
    assert code == 2 and sim.stats.models_created == 0


# -- --out that is no regular file -----------------------------------------------------------


async def test_out_dev_null_is_streamed_and_left_a_device(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """`--out /dev/null`: exit 0, /dev/null still a character device (never replaced)."""
    code, _, _ = await run(*_batch(sim, tmp_path, 2, "--out", os.devnull))
    assert code == 0 and stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
async def test_out_fifo_whose_reader_leaves_is_a_one_line_write_failure(
    still: Simulator, run: Run, tmp_path: Path, suffix: str
) -> None:
    """The FIFO's reader leaves after the first row: the next row's EPIPE stops the batch
    with exit 2 and one line naming --out, no traceback; the FIFO stays a FIFO."""
    fifo = tmp_path / f"out{suffix}"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    batch = asyncio.create_task(run(*_batch(still, tmp_path, 3, "--out", str(fifo))))
    try:
        await wait_until(lambda: len(_created(still)) == 3)
        first, *rest = _created(still)
        still.set_status(first, "active")
        await wait_until(lambda: select.select([reader], [], [], 0)[0])  # the first row came
    finally:
        os.close(reader)
    for model_id in rest:
        still.set_status(model_id, "active")
    code, _, err = await asyncio.wait_for(batch, 60)
    assert code == 2 and "Traceback" not in err and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert f"cannot write --out {fifo}: Broken pipe" in err and len(err.splitlines()) == 1


async def test_out_dev_stdout_into_a_pipe_streams_every_row(sim: Simulator, tmp_path: Path) -> None:
    """`batch --out /dev/stdout | cat`: exit 0 and a JSON row per job among the lines."""
    argv = _batch(sim, tmp_path, 3, "--out", "/dev/stdout")
    with _python(argv, sim, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
    rows = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 0, err.decode()
    assert sorted(json.loads(row)["index"] for row in rows) == [0, 1, 2]


async def test_out_dev_stdout_appended_to_a_log_keeps_the_log(
    sim: Simulator, tmp_path: Path
) -> None:
    """`batch --out /dev/stdout >> run.log`: the log keeps its first line and the summary."""
    log = tmp_path / "run.log"
    log.write_text("earlier run\n")
    with log.open("a") as stdout:
        argv = _batch(sim, tmp_path, 3, "--out", "/dev/stdout")
        process = _python(argv, sim, stdout=stdout, stderr=subprocess.DEVNULL)
        assert await asyncio.to_thread(process.wait, 60) == 0
    text = log.read_text()
    assert text.startswith("earlier run\n") and "3 job(s)" in text


async def test_out_fifo_nobody_reads_is_refused_before_anything_is_sent(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """A FIFO `--out` with no reader: exit 2 naming it at once, not a loop blocked in open()."""
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    code, _, err = await run(*_batch(sim, tmp_path, 2, "--out", str(fifo)))
    assert code == 2 and f"--out {fifo}: a FIFO nobody reads yet" in err
    assert sim.stats.total_requests == 0


# -- stdout that cannot be written -------------------------------------------------------------


@pytest.mark.parametrize("argv", [["get", "--json", "MODEL"], ["wait", "MODEL"], ["status"]])
async def test_api_and_journal_commands_whose_reader_left_exit_141(
    sim: Simulator, run: Run, tmp_path: Path, argv: list[str]
) -> None:
    """`get --json`, `wait` and `status` into a closed pipe: 141, nothing on stderr but
    `wait`'s own change line; no traceback."""
    await run(*_batch(sim, tmp_path, 1))
    model = _created(sim)[0]
    argv = [model if word == "MODEL" else word for word in argv]
    if argv == ["status"]:
        argv += ["--journal", str(tmp_path / "j")]
    code, err = await asyncio.to_thread(_to_nobody, argv, sim)
    assert code == 141 and "Traceback" not in err and len(err.splitlines()) <= 1


async def test_a_batch_with_stdout_and_stderr_both_gone_keeps_out_and_journal(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """Both pipes closed: exit 141 (the note itself hits EPIPE), --out has a row per job,
    and the rerun finishes every job, none created twice."""
    out = tmp_path / "out.jsonl"
    argv = _batch(sim, tmp_path, 4, "--out", str(out))
    code, _ = await asyncio.to_thread(_to_nobody, argv, sim, close_stderr=True)
    assert code == 141 and len(out.read_text().splitlines()) == 4
    assert (await run(*argv))[0] == 0 and sim.stats.duplicates == 0


async def test_a_live_batch_whose_reader_left_exits_141(sim: Simulator, tmp_path: Path) -> None:
    """`batch --view live` into a closed pipe: off a terminal the view draws only its last
    frame, so the batch ends first; then exit 141, with no traceback and no "stopped" note."""
    argv = [*_batch(sim, tmp_path, 3), "--view", "live"]
    code, err = await asyncio.to_thread(_to_nobody, argv, sim)
    assert code == 141 and "Traceback" not in err and "stopped" not in err
    assert sim.stats.models_created == 3


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["batch", "list"])
async def test_stdout_on_a_full_disk_is_one_error_line(
    sim: Simulator, tmp_path: Path, command: str
) -> None:
    """stdout is /dev/full: one error line on stderr, no traceback."""
    argv = _batch(sim, tmp_path, 2) if command == "batch" else ["list"]
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        process = _python(argv, sim, stdout=full, stderr=subprocess.PIPE)
        _, err = await asyncio.to_thread(process.communicate, timeout=60)
    finally:
        os.close(full)
    text = err.decode()
    assert "Traceback" not in text and process.returncode == 1
    assert text.splitlines()[-1].endswith("OSError: [Errno 28] No space left on device")
    if command == "batch":
        assert "stopped (No space left on device); journal" in text


# -- run_batch's poll intervals ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"poll_interval": math.nan}, {"max_poll_interval": math.nan},
     {"poll_interval": -math.inf}, {"poll_interval": 0.0},
     {"max_poll_interval": None}, {"poll_interval": None}, {"poll_interval": "2"}],
)  # fmt: skip
async def test_run_batch_refuses_odd_poll_intervals_before_anything(
    sim: Simulator, tmp_path: Path, options: dict[str, Any]
) -> None:
    """nan, -inf, 0, None or a string: InvalidRequestError naming the field, before any
    request, journal or dry-run plan."""
    field = next(iter(options))
    async with hr.HappyRobotClient(sim.api_key, sim.base_url) as client:
        for dry_run in (False, True):
            with pytest.raises(hr.InvalidRequestError) as refused:
                await hr.run_batch(
                    client, make_jobs(sim, 1), journal=tmp_path / "j", dry_run=dry_run, **options
                )
            assert refused.value.field == field
    assert sim.stats.total_requests == 0 and not (tmp_path / "j").exists()


# -- the gate under many cancels ----------------------------------------------------------------


async def _gate_round(rng: random.Random) -> None:
    size = rng.randint(1, 4)
    gate, holders, most = Gate(size), 0, 0

    async def holder() -> None:
        nonlocal holders, most
        for _ in range(rng.randint(0, 2)):
            await asyncio.sleep(0)
        if not gate.take():
            await gate.wait()
        holders += 1
        most = max(most, holders)
        try:
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
        finally:
            holders -= 1
            gate.give()

    tasks = [asyncio.create_task(holder()) for _ in range(rng.randint(5, 60))]
    while not all(task.done() for task in tasks):
        for task in rng.sample(tasks, k=rng.randint(0, 3)):
            task.cancel()
        for _ in range(rng.randint(0, 2)):
            await asyncio.sleep(0)
    assert most <= size and holders == 0
    assert (gate.free, gate.waiting) == (size, 0)


async def test_the_gate_loses_no_place_under_random_cancels_and_gives() -> None:
    """Holders and waiters cancelled at random moments (a place just handed over included):
    never more than `size` holders, and at the end every place is free, nobody waits."""
    rng = random.Random(10)
    for _ in range(500):
        await _gate_round(rng)


# -- errors in cycles ---------------------------------------------------------------------------


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda error: type(error).__name__)
def test_errors_in_cycles_survive_pickle_and_deepcopy(error: hr.HappyRobotError) -> None:
    """Every error class, tied in a cycle through an AmbiguousCreateError's `cause`, its own
    attribute, `__cause__` and `__context__`: pickle (each protocol) and deepcopy keep the
    class, args and the cycle; the dunder links are dropped, never a crash."""
    error = copy.copy(error)
    outer = hr.AmbiguousCreateError(CREATE, attempts=1, cause=error)
    error.outer = outer  # type: ignore[attr-defined]
    error.__cause__, error.__context__, outer.__context__ = outer, error, error
    copies = [pickle.loads(pickle.dumps(error, protocol)) for protocol in range(6)]
    for twin in [*copies, copy.deepcopy(error)]:
        assert type(twin) is type(error) and twin.args == error.args and str(twin) == str(error)
        assert twin.outer.cause is twin and twin.outer.attempts == 1
