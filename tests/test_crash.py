"""The crash test: `batch` killed with SIGKILL at random moments, rerun each time.

A standalone simulator runs in its own process. Creates are slowed down (0.4 s
each) so the creation phase of 200 jobs spans many runs; kill delays (seeded,
0.05-4 s) are long enough for some reruns to get past reconciling the creates
the previous run left in flight (about 2 s: the SDK's settle delay) and short
enough that most die mid-way. So kills land while the process starts, while
intents are reconciled, while creates are in flight and while models are
watched. After the last run: exactly one model per job on the server, and
results.jsonl agrees with it.
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

ROOT = Path(__file__).resolve().parent.parent
JOBS = 200
KILLS = 12
MAX_RUNS = 60
SEED = 20240611
SIMULATOR = (
    *("--seed", "11", "--speed", "10", "--failure-rate", "0.1"),
    # 16 creates in flight at 0.4 s each: about 5 s of creating, over several runs
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
    while len(lines) < 6:
        key, _, value = (await process.stdout.readline()).decode().strip().partition(": ")
        lines[key] = value
    return process, lines


def _write_jobs(path: Path, sim: dict[str, str]) -> list[dict[str, Any]]:
    use_cases = sim["use_case_ids"].split(",")
    bases = sim["base_model_ids"].split(",")  # two per use case, in use-case order
    jobs = [
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
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return jobs


async def _batch(tmp_path: Path, sim: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "batch", str(tmp_path / "jobs.jsonl")),
        *("--journal", str(tmp_path / "run.journal"), "--out", str(tmp_path / "results.jsonl")),
        *("--concurrency", "16", "--poll-interval", "0.05", "--base-url", sim["base_url"]),
        cwd=ROOT,
        env={**os.environ, "HAPPYROBOT_API_KEY": sim["api_key"]},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_batch_killed_at_random_moments_ends_with_one_model_per_job(tmp_path: Path) -> None:
    """SIGKILLed at 12+ seeded random moments and rerun, a 200-job batch ends with 200 models."""
    rng = random.Random(SEED)
    simulator, sim = await _start_simulator()
    try:
        jobs = _write_jobs(tmp_path / "jobs.jsonl", sim)
        kills = runs = 0
        while kills < KILLS and runs < MAX_RUNS:
            runs += 1
            process = await _batch(tmp_path, sim)
            try:
                await asyncio.wait_for(process.wait(), timeout=rng.uniform(0.05, 4.0))
            except TimeoutError:
                process.kill()
                await process.wait()
                kills += 1
            else:
                assert process.returncode in (0, 1)  # finished early: rerun anyway
        assert kills >= KILLS, f"only {kills} of {runs} runs were still running when killed"
        last = await _batch(tmp_path, sim)
        assert await asyncio.wait_for(last.wait(), timeout=60) in (0, 1)

        async with aiohttp.ClientSession() as session:
            async with session.get(sim["stats_url"]) as response:
                stats = await response.json()
            async with session.get(
                f"{sim['base_url']}/models",
                headers={"authorization": f"Bearer {sim['api_key']}"},
            ) as response:
                server = {model["id"]: model for model in await response.json()}
        by_name = Counter(
            {(e["use_case_id"], e["name"]): e["count"] for e in stats["models_by_name"]}
        )
        assert stats["models_created"] == JOBS
        assert stats["duplicates"] == 0
        assert by_name == Counter({(job["use_case_id"], job["name"]): 1 for job in jobs})

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
        assert len({row["model_id"] for row in results}) == JOBS
    finally:
        if simulator.returncode is None:
            simulator.send_signal(signal.SIGINT)
            await asyncio.wait_for(simulator.wait(), timeout=10)
