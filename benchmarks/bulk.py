"""Bulk: a 1,000-job `run_batch` end to end vs raw aiohttp with one polling task per job.

Each repetition runs every variant once, in a rotated order, each in a child
process of its own (so `time.process_time()` is that variant's alone: the event
loop, the journal's writer thread, everything) against a fresh standalone
simulator with a fast lifecycle (`--speed 1 --pending 1,2 --training 1,2`, its
default 10 % of models ending `failed`); all variants of a repetition use the
same simulator seed, so they see the same lifecycles. In repetition r of R,
training is shifted r/R of a poll interval later (`--training 1+s,2+s`), so the
last model ends at a different phase of the watcher's poll grid each time (see
`shift`). The variants:

- **run_batch + journal**: `hr.run_batch(client, jobs, journal=PATH)` with a new
  journal file, as users run it; the documented defaults (`concurrency=16`
  creates at once, the client's `max_concurrency=64` connections) except the
  poll interval, fixed at I = 0.5 s (`poll_interval=max_poll_interval=I`) to
  suit the fast lifecycle.
- **run_batch, no journal**: the same without `journal=` (an in-memory one).
- **raw aiohttp**: one `aiohttp.ClientSession` (connector limit 64), `json.dumps`
  / `json.loads`, one task per job: `POST /models` (at most 16 at once, as
  `run_batch`), then `sleep(I)` and `GET /models/{id}` until `active` or `failed`.

Timed per variant, from opening the client to closing it after the last job
ended: wall time, client CPU (the child process's), the simulator's CPU (its
/proc counters) and its request counters. Ratios are paired within a
repetition. Targets (issue 13, item 4): the SDK wins on both, i.e. run_batch
(with its journal) / raw ≤ 1.0 for wall time and for client CPU per job.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

import happyrobot_async as hr

from ._common import (
    ROOT,
    display_command,
    fmt,
    main_for,
    process_cpu_seconds,
    rotated,
    simulate_command,
    simulator,
    summary,
    table,
)

VARIANTS = ("sdk", "sdk_memory", "raw")
LABELS = {
    "sdk": "run_batch + journal",
    "sdk_memory": "run_batch, no journal",
    "raw": "raw aiohttp, task per job",
}
TARGETS = {"wall_ratio": 1.0, "cpu_ratio": 1.0}
"""run_batch (with a journal) / raw, paired per repetition: the SDK wins on both."""
CONCURRENCY = 16  # run_batch's default: creates at once
MAX_CONCURRENCY = 64  # HappyRobotClient's default: connections
TERMINAL = ("active", "failed")
FIGURES = ("seconds", "cpu_us_per_job", "server_cpu_us_per_job", "requests_per_job", "rss_mb")


def sim_args(args: argparse.Namespace, rep: int) -> list[str]:
    """The simulator's options: U use cases, a fast lifecycle, training shifted by `shift`."""
    low, high = (float(part) + shift(args, rep) for part in args.training.split(","))
    return ["--use-cases", str(args.use_cases), "--speed", "1", "--pending", args.pending,
            "--training", f"{low:g},{high:g}"]  # fmt: skip


def shift(args: argparse.Namespace, rep: int) -> float:
    """How much later training ends in repetition `rep`: `rep / repeat` of a poll interval.

    With 1,000 jobs the last model ends close to the lifecycle's upper bound, so
    with one fixed bound the run_batch watcher's lists (one per use case every I,
    on a grid set by the first create) would catch it at the same phase every
    time: a systematic gain or loss of up to I against one task per job, which
    polls each model on a grid of its own. Shifting the bound by a different
    fraction of I in each repetition samples every phase; the variants of a
    repetition share it.
    """
    value: float = args.interval * rep / args.repeat
    return round(value, 3)


def make_jobs(count: int, use_cases: Sequence[str], bases: Sequence[str]) -> list[dict[str, Any]]:
    """`count` jobs spread round-robin over the use cases, as a jobs file gives them."""
    per = len(bases) // len(use_cases)
    return [
        {
            "use_case_id": use_cases[i % len(use_cases)],
            "name": f"bulk-{i:05d}",
            "from_model_id": bases[(i % len(use_cases)) * per],
            "train_sample_ids": [f"{i:024x}", f"{i + 1:024x}"],
            "test_sample_ids": [f"{i + 2:024x}"],
            "key": f"job-{i}",
        }
        for i in range(count)
    ]


# -- the variants (each runs in a child process) ----------------------------------------------


Job = dict[str, Any]
Where = Callable[[], dict[str, int]]
"""How many jobs are at each stage now: reported if a variant overruns its deadline."""


async def _sdk(conf: dict[str, Any], jobs: list[Job], where: list[Where]) -> Counter[str]:
    interval = conf["interval"]
    progress = hr.BatchProgress()  # what run_batch makes when given none
    where.append(progress.counts)
    async with hr.HappyRobotClient(conf["api_key"], conf["base_url"]) as client:
        report = await hr.run_batch(
            client,
            jobs,
            journal=conf["journal"],
            progress=progress,
            poll_interval=interval,
            max_poll_interval=interval,
        )
    return Counter(report.counts())


async def _raw(conf: dict[str, Any], jobs: list[Job], where: list[Where]) -> Counter[str]:
    base, interval = conf["base_url"], conf["interval"]
    headers = {
        "authorization": f"Bearer {conf['api_key']}",
        "accept": "application/json",
        "content-type": "application/json",
    }
    slots = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=MAX_CONCURRENCY)
    stages = ["queued"] * len(jobs)
    where.append(lambda: dict(Counter(stages)))
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(index: int, job: dict[str, Any]) -> str:
            body = {k: v for k, v in job.items() if k != "key"}
            data = json.dumps({**body, "explain_tools": True}).encode()
            async with slots, session.post(f"{base}/models", data=data) as response:
                payload = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"POST /models: HTTP {response.status}")
            model = json.loads(payload)
            url = f"{base}/models/{model['id']}"
            stages[index] = model["status"]
            while model["status"] not in TERMINAL:
                await asyncio.sleep(interval)
                async with session.get(url) as response:
                    payload = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"GET /models/ID: HTTP {response.status}")
                model = json.loads(payload)
                stages[index] = model["status"]
            status: str = model["status"]
            return status

        return Counter(await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs))))


async def child(conf: dict[str, Any]) -> dict[str, Any]:
    """One variant's whole batch, timed; then the simulator's counters."""
    jobs = make_jobs(conf["jobs"], conf["use_case_ids"], conf["base_model_ids"])
    work = _raw if conf["variant"] == "raw" else _sdk
    gc.collect()
    server0 = process_cpu_seconds(conf["sim_pid"])
    began = time.monotonic()  # the simulator's log is stamped with time.monotonic() too
    cpu0, wall0 = time.process_time(), time.perf_counter()
    where: list[Where] = []
    try:
        async with asyncio.timeout(conf["timeout"]):
            outcomes = await work(conf, jobs, where)
    except TimeoutError:
        stages = where[0]() if where else {}
        raise RuntimeError(
            f"{conf['variant']}: not done after {conf['timeout']:g} s; jobs by stage: {stages}"
        ) from None
    wall1, cpu1 = time.perf_counter(), time.process_time()
    server1 = process_cpu_seconds(conf["sim_pid"])
    async with aiohttp.ClientSession() as session, session.get(conf["stats_url"]) as response:
        stats = await response.json()
    n = conf["jobs"]
    creates = [e["time"] - began for e in stats["log"] if e["route"] == "create"]
    whole_log = len(stats["log"]) == stats["total_requests"]
    return {
        "variant": conf["variant"],
        "seconds": wall1 - wall0,
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_job": (cpu1 - cpu0) / n * 1e6,
        "server_cpu_us_per_job": (server1 - server0) / n * 1e6,
        "requests": stats["total_requests"],
        "requests_per_job": stats["total_requests"] / n,
        "requests_by_route": {route: sum(c.values()) for route, c in stats["requests"].items()},
        "first_create_s": min(creates) if whole_log and creates else None,
        "last_create_s": max(creates) if whole_log and creates else None,
        "models_created": stats["models_created"],
        "duplicates": stats["duplicates"],
        "outcomes": dict(outcomes),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _spawn(conf: dict[str, Any]) -> dict[str, Any]:
    """Run one variant in a fresh interpreter; its JSON result (the last line it prints)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bulk", "--child", json.dumps(conf)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=conf["timeout"] + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"variant {conf['variant']} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


# -- the parent ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant once per repetition, rotated, each against a fresh simulator."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(args.repeat):
            order = rotated(list(VARIANTS), rep)
            results: dict[str, Any] = {"rep": rep, "order": order, "shift": shift(args, rep)}
            for name in order:
                with simulator(*sim_args(args, rep), seed=rep) as sim:
                    journal = str(Path(scratch) / f"r{rep}.journal") if name == "sdk" else None
                    conf = {
                        "variant": name,
                        "jobs": args.jobs,
                        "interval": args.interval,
                        "journal": journal,
                        "base_url": sim.base_url,
                        "api_key": sim.api_key,
                        "use_case_ids": sim.use_case_ids,
                        "base_model_ids": sim.base_model_ids,
                        "stats_url": sim.stats_url,
                        "sim_pid": sim.pid,
                        "timeout": args.timeout,
                    }
                    results[name] = _spawn(conf)
            runs.append(results)
            print(f"rep {rep}: " + _line(results), flush=True)
    return {
        "benchmark": "bulk",
        "settings": {
            "jobs": args.jobs,
            "use_cases": args.use_cases,
            "interval": args.interval,
            "pending": args.pending,
            "training": args.training,
            "repeat": args.repeat,
            "concurrency": CONCURRENCY,
            "max_concurrency": MAX_CONCURRENCY,
        },
        "targets": TARGETS,
        "simulator": display_command(simulate_command(*sim_args(args, 0), seed=0)),
        "runs": runs,
        "summary": summarize(runs),
    }


def _line(results: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {results[name]['seconds']:.2f} s {results[name]['cpu_us_per_job']:.0f} µs/job "
        f"{results[name]['requests_per_job']:.2f} req/job"
        for name in results["order"]
    )


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each variant's figures, and the paired ratios to raw (and journal / no journal)."""
    out: dict[str, Any] = {}
    for name in VARIANTS:
        rows = [r[name] for r in runs]
        out[name] = {key: summary([row[key] for row in rows]) for key in FIGURES}
        for key in ("first_create_s", "last_create_s"):
            values = [row[key] for row in rows if row.get(key) is not None]
            out[name][key] = summary(values) if len(values) == len(rows) else None
        out[name]["duplicates"] = sum(row["duplicates"] for row in rows)
        out[name]["models_created"] = sum(row["models_created"] for row in rows)
        out[name]["jobs_ended"] = sum(
            n for row in rows for k, n in row["outcomes"].items() if k in TERMINAL
        )
    for name in ("sdk", "sdk_memory"):
        out[f"{name}_raw_wall"] = summary([r[name]["seconds"] / r["raw"]["seconds"] for r in runs])
        out[f"{name}_raw_cpu"] = summary(
            [r[name]["cpu_us_per_job"] / r["raw"]["cpu_us_per_job"] for r in runs]
        )
    out["journal_cpu_us_per_job"] = summary(
        [r["sdk"]["cpu_us_per_job"] - r["sdk_memory"]["cpu_us_per_job"] for r in runs]
    )
    return out


def verdicts(result: dict[str, Any]) -> list[tuple[str, dict[str, float], float, bool]]:
    """(figure, its summary, target, met) for each target: medians against the targets."""
    s = result["summary"]
    wall, cpu = s["sdk_raw_wall"], s["sdk_raw_cpu"]
    return [
        ("wall time", wall, TARGETS["wall_ratio"], wall["median"] <= TARGETS["wall_ratio"]),
        ("client CPU per job", cpu, TARGETS["cpu_ratio"], cpu["median"] <= TARGETS["cpu_ratio"]),
    ]


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    s, m = result["settings"], result["summary"]
    rows = [
        ["wall time (s)", *(fmt(m[n]["seconds"], 2) for n in VARIANTS)],
        ["client CPU per job (µs)", *(fmt(m[n]["cpu_us_per_job"]) for n in VARIANTS)],
        ["first POST at (s)", *(_maybe(m[n]["first_create_s"]) for n in VARIANTS)],
        ["last POST at (s)", *(_maybe(m[n]["last_create_s"]) for n in VARIANTS)],
        ["requests per job", *(fmt(m[n]["requests_per_job"], 2) for n in VARIANTS)],
        ["server CPU per job (µs)", *(fmt(m[n]["server_cpu_us_per_job"]) for n in VARIANTS)],
        ["client peak RSS (MB)", *(fmt(m[n]["rss_mb"]) for n in VARIANTS)],
        [
            "jobs ended / models created / duplicates",
            *(
                f"{m[n]['jobs_ended']:,} / {m[n]['models_created']:,} / {m[n]['duplicates']}"
                for n in VARIANTS
            ),
        ],
    ]
    ratios = [
        [LABELS["sdk"], fmt(m["sdk_raw_wall"], 3), fmt(m["sdk_raw_cpu"], 3)],
        [LABELS["sdk_memory"], fmt(m["sdk_memory_raw_wall"], 3), fmt(m["sdk_memory_raw_cpu"], 3)],
    ]
    return "\n".join(
        [
            f"{s['jobs']:,} jobs over {s['use_cases']} use cases, pending {s['pending']} s and "
            f"training {s['training']} s plus a shift of (repetition / {s['repeat']}) \u00d7 I, "
            f"poll interval I = {s['interval']:g} s, "
            f"{s['repeat']} repetitions (totals over all of them in the last row); "
            "median (min\u2013max).",
            "",
            table(["", *(LABELS[n] for n in VARIANTS)], rows),
            "",
            "Paired ratios to raw aiohttp (per repetition, same lifecycles):",
            "",
            table(["", "wall time", "client CPU per job"], ratios),
            "",
            _phases(result["runs"]),
            "",
            "Wall time and CPU run from opening the client to closing it after the last job "
            "ended; the first and last POST are stamped by the simulator's request log, from "
            "the same start. Client CPU is the child process's, every thread (the journal "
            f"writes and fsyncs on a thread of its own): the journal's share is "
            f"{fmt(m['journal_cpu_us_per_job'])} µs per job (run_batch with a journal minus "
            "without, paired).",
        ]
    )


def _phases(runs: list[dict[str, Any]]) -> str:
    """Wall time averaged over the repetitions, i.e. over the phases the shift samples."""
    mean = {n: statistics.fmean(r[n]["seconds"] for r in runs) for n in VARIANTS}
    return (
        "Every variant's end lands on a poll grid (run_batch: one list per use case every "
        "I from its first model; raw: each model every I plus a GET's time from its "
        "create), so which variant a repetition's phase favours depends on where the grids "
        "fall. Averaged over the phases, the wall time is "
        + ", ".join(f"{mean[n]:.3f} s for {LABELS[n]}" for n in VARIANTS)
        + f": {mean['sdk'] / mean['raw']:.3f}x raw with the journal, "
        f"{mean['sdk_memory'] / mean['raw']:.3f}x without (the target is judged on the "
        "median paired ratio above)."
    )


def _maybe(stat: dict[str, float] | None) -> str:
    return "?" if stat is None else fmt(stat, 2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes."""
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--use-cases", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval I, s")
    parser.add_argument("--pending", default="1,2", help="LOW,HIGH s pending")
    parser.add_argument("--training", default="1,2", help="LOW,HIGH s training")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=300, help="per variant run, s")


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        args.jobs, args.repeat, args.interval, args.timeout = 40, 1, 0.1, 60
        args.pending, args.training = "0.2,0.3", "0.2,0.3"
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.bulk [--jobs N] [--interval I] [--repeat R] ...`.

    The hidden `--child CONF` runs one variant and prints its JSON.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        print(json.dumps(asyncio.run(child(json.loads(args[1])))))
        return 0
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, args)


if __name__ == "__main__":
    raise SystemExit(main())
