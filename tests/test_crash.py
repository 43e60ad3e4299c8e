"""The crash test: `batch` killed with SIGKILL at random moments, rerun each time.

A standalone simulator runs in its own process. Creates are slowed down (0.4 s
each) so the creation phase spans many runs; kill delays (seeded, 0.05-4 s) are
long enough for some reruns to get past reconciling the creates the previous
run left in flight and short enough that most die mid-way. So kills land while
the process starts, while intents are reconciled, while creates are in flight
and while models are watched. Meanwhile:

- jobs are appended to the jobs file between runs (150 at first, 200 in the end);
- while some runs hold the journal, a second runner is started with another key
  of the simulator (one it refuses with 403): it must exit 2 naming the holder's
  pid, having sent nothing (the simulator never answers a 403);
- the last run asks `--retry-failed`.

After the last run: exactly one model per job on the server, two for each job
the journal had finished `failed` before it, and results.jsonl agrees.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from conftest import wait_until

import happyrobot_async as hr
from happyrobot_async.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
FIRST_JOBS, JOBS, ADDED_PER_RUN = 150, 200, 10
KILLS = 12
MAX_RUNS = 60
SECOND_RUNNER_IN = (1, 4)  # the runs a second runner tries to start during
SEED = 20240611
SIMULATOR = (
    *("--seed", "11", "--speed", "10", "--failure-rate", "0.1", "--forbidden-key"),
    # 16 creates in flight at 0.4 s each: about 4 s of creating, over several runs
    *("--fault", "latency:1:create:delay=0.4"),
)


async def _start_simulator() -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "simulate", "--port", "0", *SIMULATOR),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: dict[str, str] = {}
    while len(lines) < 7:
        key, _, value = (await process.stdout.readline()).decode().strip().partition(": ")
        lines[key] = value
    return process, lines


def _jobs(sim: dict[str, str]) -> list[dict[str, Any]]:
    use_cases = sim["use_case_ids"].split(",")
    bases = sim["base_model_ids"].split(",")  # two per use case, in use-case order
    return [
        {
            "use_case_id": use_cases[number % 3],
            "name": f"crash-{number:03d}",
            "from_model_id": bases[2 * (number % 3)],
            "train_sample_ids": [f"{number:024x}"],
            "test_sample_ids": [f"{number + 1000:024x}"],
            "key": f"job-{number}",
        }
        for number in range(JOBS)
    ]


def _write_jobs(path: Path, jobs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))


async def _batch(
    tmp_path: Path, sim: dict[str, str], *more: str, key: str | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "batch", str(tmp_path / "jobs.jsonl")),
        *("--journal", str(tmp_path / "run.journal"), "--out", str(tmp_path / "results.jsonl")),
        *("--concurrency", "16", "--poll-interval", "0.05", "--base-url", sim["base_url"]),
        *more,
        cwd=ROOT,
        env={**os.environ, "HAPPYROBOT_API_KEY": key or sim["api_key"]},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL if key is None else asyncio.subprocess.PIPE,
    )


async def _second_runner_is_refused(
    tmp_path: Path, sim: dict[str, str], holder: asyncio.subprocess.Process
) -> None:
    """Once `holder` holds the journal, another runner exits 2 naming it, sending nothing."""
    lock = tmp_path / "run.journal.lock"
    await wait_until(
        lambda: lock.exists() and lock.read_text().strip() == str(holder.pid), timeout=30
    )
    second = await _batch(tmp_path, sim, key=sim["forbidden_api_key"])
    _, err = await asyncio.wait_for(second.communicate(), timeout=60)
    assert second.returncode == 2, err.decode()
    assert f"in use by another runner (pid {holder.pid})" in err.decode()


async def test_batch_killed_at_random_moments_ends_with_one_model_per_job(tmp_path: Path) -> None:
    """Killed 12+ times while jobs are added and another runner knocks: one model per job."""
    rng = random.Random(SEED)
    simulator, sim = await _start_simulator()
    try:
        jobs = _jobs(sim)
        count = FIRST_JOBS
        _write_jobs(tmp_path / "jobs.jsonl", jobs[:count])
        kills = runs = 0
        while kills < KILLS and runs < MAX_RUNS:
            runs += 1
            process = await _batch(tmp_path, sim)
            if runs in SECOND_RUNNER_IN:
                await _second_runner_is_refused(tmp_path, sim, process)
            try:
                await asyncio.wait_for(process.wait(), timeout=rng.uniform(0.05, 1.5))
            except TimeoutError:
                try:
                    process.kill()
                except ProcessLookupError:  # it finished just as the timeout fired
                    await process.wait()
                    assert process.returncode in (0, 1)
                else:
                    await process.wait()
                    kills += 1
            else:
                assert process.returncode in (0, 1)  # finished early: rerun anyway
            if count < JOBS:
                count += ADDED_PER_RUN
                _write_jobs(tmp_path / "jobs.jsonl", jobs[:count])
        assert kills >= KILLS, f"only {kills} of {runs} runs were still running when killed"
        assert count == JOBS

        typed = [hr.TrainingJob(**job) for job in jobs]
        with Journal.open(tmp_path / "run.journal", typed) as journal:
            retried = {job.key for job in typed if journal.state(job).failed}
        assert retried, "some trainings should have failed before the last run"
        last = await _batch(tmp_path, sim, "--retry-failed")
        assert await asyncio.wait_for(last.wait(), timeout=90) in (0, 1)

        async with aiohttp.ClientSession() as session:
            async with session.get(sim["stats_url"]) as response:
                stats = await response.json()
            async with session.get(
                f"{sim['base_url']}/models",
                headers={"authorization": f"Bearer {sim['api_key']}"},
            ) as response:
                server = {model["id"]: model for model in await response.json()}
        assert all("403" not in statuses for statuses in stats["requests"].values())
        by_name = Counter(
            {(e["use_case_id"], e["name"]): e["count"] for e in stats["models_by_name"]}
        )
        wanted = {
            (job["use_case_id"], job["name"]): 2 if job["key"] in retried else 1 for job in jobs
        }
        assert by_name == Counter(wanted)
        assert stats["models_created"] == JOBS + len(retried)

        results = [
            json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()
        ]
        assert len(results) == JOBS
        for number, (job, row) in enumerate(zip(jobs, results, strict=True)):
            assert (row["index"], row["key"], row["name"]) == (number, job["key"], job["name"])
            model = server[row["model_id"]]
            assert (model["name"], model["use_case_id"]) == (job["name"], job["use_case_id"])
            assert row["status"] == model["status"] and row["status"] in ("active", "failed")
            assert row["error"] is None
            assert len(row["history"]) == wanted[(job["use_case_id"], job["name"])]
            assert row["history"][-1] == row["model_id"]
        assert len({row["model_id"] for row in results}) == JOBS
    finally:
        if simulator.returncode is None:
            simulator.send_signal(signal.SIGINT)
            await asyncio.wait_for(simulator.wait(), timeout=10)
