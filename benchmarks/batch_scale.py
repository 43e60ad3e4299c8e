"""Batch scale: start and resume a 10,000-job batch; the event loop's lag during a 1,000-job one.

Each phase runs in a child process of its own (clean memory figures: the peak
RSS of that process), against a standalone simulator (`--use-cases 10`):

- **start**: `run_batch` on 10,000 new jobs (given as dicts, as a jobs file gives
  them) with a new journal: validation, journal (created, locked), preflight (one
  list per use case, one GET per distinct `from_model_id`), until the first job
  is being sent. Then the run is cancelled. Validation and preflight are also
  timed on their own, and the preflight's requests counted.
- **resume**: `run_batch` with a finished 10,000-job journal (written beforehand
  through the journal's own API: intent, created, two statuses, done per job):
  replay, every result rebuilt, no request at all.
- **lag**: a whole 1,000-job batch (journal on disk, concurrency 16, a fast
  simulator) while a probe task sleeps 5 ms at a time and records how late it
  wakes: the event loop's lag. The journal's fsyncs run on its writer thread;
  how many it made, against how many records had to be durable, shows the
  group commit.

Targets (issue 12, item 9): start ≤ 2 s plus the preflight's requests, resume
≤ 2 s, RSS ≤ 150 MB, loop lag p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import happyrobot_async as hr
from happyrobot_async._jobs import validate_jobs
from happyrobot_async._preflight import preflight
from happyrobot_async.journal import Journal

from ._common import ROOT, display_command, main_for, simulate_command, simulator

TARGETS = {"start_s": 2.0, "resume_s": 2.0, "rss_mb": 150.0, "lag_p99_ms": 50.0}
PROBE = 0.005


def _jobs(count: int, use_cases: Sequence[str], bases: Sequence[str]) -> list[dict[str, Any]]:
    per = len(bases) // len(use_cases)
    return [
        {
            "use_case_id": use_cases[i % len(use_cases)],
            "name": f"scale-{i:05d}",
            "from_model_id": bases[(i % len(use_cases)) * per],
            "train_sample_ids": [f"{i:024x}", f"{i + 1:024x}"],
            "test_sample_ids": [f"{i + 2:024x}"],
            "key": f"job-{i}",
        }
        for i in range(count)
    ]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _start(conf: dict[str, Any]) -> dict[str, Any]:
    jobs = _jobs(conf["jobs"], conf["use_case_ids"], conf["base_model_ids"])
    started = time.perf_counter()
    checked = validate_jobs(jobs)
    validate = time.perf_counter() - started
    async with hr.HappyRobotClient(conf["api_key"], conf["base_url"]) as client:
        use_cases = {uc: ["x"] for uc in conf["use_case_ids"]}
        sources = {job.from_model_id: ["x"] for job in checked}
        began = time.perf_counter()
        requests = await preflight(client, use_cases, sources, concurrency=16)
        alone = time.perf_counter() - began
        progress = hr.BatchProgress()
        began = time.perf_counter()
        task = asyncio.create_task(
            hr.run_batch(client, jobs, journal=conf["journal"], progress=progress)
        )
        while not any(row.stage is not hr.JobStage.QUEUED for row in progress.jobs):
            if task.done():
                task.result()
            await asyncio.sleep(0.0005)
        start = time.perf_counter() - began
        task.cancel()
        await asyncio.wait([task])
    return {
        "start_s": start,
        "validate_s": validate,
        "preflight_s": alone,
        "preflight_requests": requests,
        "rss_mb": _rss_mb(),
    }


def _write_finished(path: Path, count: int, use_cases: list[str], bases: list[str]) -> None:
    checked = validate_jobs(_jobs(count, use_cases, bases))
    with Journal.open(path, checked) as journal:
        for i, job in enumerate(checked):
            model_id = f"{i:024x}"
            journal.intent(job)
            journal.created(job, model_id)
            journal.status(job, model_id, "pending")
            journal.status(job, model_id, "training")
            model = {
                "id": model_id,
                "created_at": "2024-05-01T10:00:00Z",
                "status": "active",
                "name": job.name,
                "use_case_id": job.use_case_id,
                "from_model_id": job.from_model_id,
                "train_sample_ids": list(job.train_sample_ids),
                "test_sample_ids": list(job.test_sample_ids),
            }
            journal.done(job, model, None)


async def _resume(conf: dict[str, Any]) -> dict[str, Any]:
    jobs = _jobs(conf["jobs"], conf["use_case_ids"], conf["base_model_ids"])
    async with hr.HappyRobotClient(conf["api_key"], conf["base_url"]) as client:
        began = time.perf_counter()
        report = await hr.run_batch(client, jobs, journal=conf["journal"])
        resume = time.perf_counter() - began
    assert report.counts() == {"active": len(jobs)}
    return {"resume_s": resume, "rss_mb": _rss_mb()}


async def _lag(conf: dict[str, Any]) -> dict[str, Any]:
    jobs = _jobs(conf["jobs"], conf["use_case_ids"], conf["base_model_ids"])
    lags: list[float] = []
    loop = asyncio.get_running_loop()

    async def probe() -> None:
        while True:
            planned = loop.time() + PROBE
            await asyncio.sleep(PROBE)
            lags.append(max(0.0, loop.time() - planned))

    journal = Journal.open(conf["journal"], validate_jobs(jobs))
    try:
        async with hr.HappyRobotClient(conf["api_key"], conf["base_url"]) as client:
            prober = asyncio.create_task(probe())
            began = time.perf_counter()
            report = await hr.run_batch(
                client, jobs, journal=journal, poll_interval=0.2, max_poll_interval=1.0
            )
            wall = time.perf_counter() - began
            prober.cancel()
    finally:
        journal.close()
    durable = 3 * len(jobs)  # an intent, a created and a done per job
    ordered = sorted(lags)
    return {
        "jobs_ended": len(report.results),
        "batch_s": wall,
        "lag_p50_ms": 1000 * statistics.median(ordered),
        "lag_p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "lag_max_ms": 1000 * ordered[-1],
        "lag_samples": len(ordered),
        "fsyncs": journal.fsyncs,
        "durable_records": durable,
        "rss_mb": _rss_mb(),
    }


PHASES = {"start": _start, "resume": _resume, "lag": _lag}


def _child(phase: str, conf: dict[str, Any]) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.batch_scale", "--phase", phase, json.dumps(conf)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _run(args: argparse.Namespace) -> dict[str, Any]:
    jobs, lag_jobs = (200, 50) if args.smoke else (args.jobs, args.lag_jobs)
    sim_args = ("--use-cases", "10", "--speed", "5", "--failure-rate", "0.1")
    results: dict[str, Any] = {"jobs": jobs, "lag_jobs": lag_jobs, "runs": []}
    with simulator(*sim_args) as sim, tempfile.TemporaryDirectory() as scratch:
        base = {
            "base_url": sim.base_url,
            "api_key": sim.api_key,
            "use_case_ids": sim.use_case_ids,
            "base_model_ids": sim.base_model_ids,
        }
        for repetition in range(args.repeat):
            folder = Path(scratch) / str(repetition)
            folder.mkdir()
            run: dict[str, Any] = {}
            conf = {**base, "jobs": jobs, "journal": str(folder / "start.journal")}
            run["start"] = _child("start", conf)
            finished = folder / "finished.journal"
            _write_finished(finished, jobs, sim.use_case_ids, sim.base_model_ids)
            run["resume"] = _child("resume", {**conf, "journal": str(finished)})
            lag_conf = {**base, "jobs": lag_jobs, "journal": str(folder / "lag.journal")}
            run["lag"] = _child("lag", lag_conf)
            results["runs"].append(run)
        results["simulator"] = display_command(simulate_command(*sim_args))
    return results


def render(result: dict[str, Any]) -> str:
    """The figures, against the issue's targets."""
    runs = result["runs"]

    def worst(phase: str, key: str) -> float:
        return max(float(run[phase][key]) for run in runs)

    rss = max(worst("start", "rss_mb"), worst("resume", "rss_mb"), worst("lag", "rss_mb"))
    lag = runs[-1]["lag"]
    lines = [
        f"## Batch scale ({result['jobs']:,} jobs; lag over {result['lag_jobs']:,}; "
        f"worst of {len(runs)} run(s))",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| start: validate + journal + preflight, to the first POST | "
        f"{worst('start', 'start_s'):.2f} s | ≤ {TARGETS['start_s']:.0f} s + preflight |",
        f"| of which preflight ({runs[-1]['start']['preflight_requests']} requests) | "
        f"{worst('start', 'preflight_s'):.2f} s | |",
        f"| of which validation | {worst('start', 'validate_s'):.2f} s | |",
        f"| resume a finished journal (no request) | {worst('resume', 'resume_s'):.2f} s | "
        f"≤ {TARGETS['resume_s']:.0f} s |",
        f"| peak RSS (any phase) | {rss:.0f} MB | ≤ {TARGETS['rss_mb']:.0f} MB |",
        f"| loop lag p50 / p99 / max | {lag['lag_p50_ms']:.1f} / {worst('lag', 'lag_p99_ms'):.1f}"
        f" / {worst('lag', 'lag_max_ms'):.1f} ms | p99 ≤ {TARGETS['lag_p99_ms']:.0f} ms |",
        f"| {result['lag_jobs']:,}-job batch, end to end | {lag['batch_s']:.1f} s | |",
        f"| journal fsyncs / durable records | {lag['fsyncs']:,} / {lag['durable_records']:,} | |",
        "",
        f"Simulator: `{result['simulator']}`.",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs to start and resume")
    parser.add_argument("--lag-jobs", type=int, default=1_000, help="jobs of the lag phase")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions (worst is shown)")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.batch_scale` (the hidden `--phase` runs one phase as a child)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--phase"]:
        print(json.dumps(asyncio.run(PHASES[args[1]](json.loads(args[2])))))
        return 0
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, args)


if __name__ == "__main__":
    raise SystemExit(main())
