"""Watcher scale: one `TrainingWatcher` over 10,000 models vs one polling task per model.

Each repetition runs two phases, each in a child process of its own (so memory
baselines are clean) against a fresh standalone simulator started with
`--use-cases U --speed 1 --pending L,L --training L,L`: every model is pending for
exactly L s, then training for L s. A phase:

1. creates the models (spread over the use cases), then takes the RSS baseline;
2. follows them (watcher: `client.watcher(poll_interval=I, max_poll_interval=I)` and
   `w.track(model)` for each; naive: one task per model, `get` then `sleep(I)`);
3. once every model has been seen, creates `probes` more models one at a time, a
   fraction of I apart, and follows them too;
4. resets the simulator's counters, waits K poll intervals (every model still
   live), and reads the counters: requests, and when each use case was listed;
5. waits for the probes to finish. A probe's transitions happen exactly L and 2L
   after the simulator stored it: the simulator's request log stamps its arrival
   with `time.monotonic()` (one clock for all processes on Linux), so the time
   from a transition to the watcher's `StatusChange` (or the naive task's `get`)
   is measured, not estimated.

Then a large phase, watcher only: 100,000 models in 100 use cases (one task per
model is out of the question at that size: 100,000 requests per interval). One
simulator serves all its repetitions (`--large-lifetime` keeps every model pending
throughout, so the window sees the steady state: nothing changes); the first
repetition creates the models, the others list them; each repetition runs in a
child process of its own and takes steps 1, 2 and 4 (no probes).

The harness keeps what it needs for the measurement (a count of first sightings,
the probes' transitions), not a record per model, so the RSS over baseline is the
follower's. Targets (issue 13, target 3; `TARGETS`): at 100,000 models in 100 use
cases, at most 100 requests per cycle, 8 µs of CPU per model per cycle and 1 KB of
RSS per model; at 10,000 models, every change reported within I + 0.1 s (the
worst sample of every repetition). Each is judged on the worst repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

import aiohttp

import happyrobot_async as hr

from ._common import (
    ROOT,
    SimProcess,
    display_command,
    fmt,
    main_for,
    rotated,
    rss_bytes,
    simulate_command,
    simulator,
    summary,
    table,
)
from .throughput import drive

PHASES = ("watcher", "naive")
#: Issue 13, target 3. Requests, CPU and memory at the large size; latency at 10,000.
TARGETS = {
    "requests_per_use_case_cycle": 1.0,
    "cpu_us_per_model_cycle": 8.0,
    "rss_kb_per_model": 1.0,
    "latency_over_interval_s": 0.1,
}


def sim_args(use_cases: int, lifetime: float) -> list[str]:
    """The simulator's options: `use_cases` use cases, exactly `lifetime` s pending and training."""
    life = f"{lifetime},{lifetime}"
    return ["--use-cases", str(use_cases), "--speed", "1", "--pending", life,
            "--training", life]  # fmt: skip


class Recorder:
    """How many models were seen at all, and when each probe was seen in each status."""

    def __init__(self) -> None:
        self.first_seen = 0
        self.seen: dict[str, list[tuple[str | None, str, float]]] = {}

    def watch(self, model_id: str) -> None:
        """Record every transition of this model (a probe), not only its first sighting."""
        self.seen[model_id] = []

    def note(self, model_id: str, previous: str | None, current: str) -> None:
        if previous is None:
            self.first_seen += 1
        transitions = self.seen.get(model_id)
        if transitions is not None:
            transitions.append((previous, current, time.monotonic()))


async def create_many(
    client: hr.HappyRobotClient, sim: SimProcess, prefix: str, count: int
) -> list[hr.Model]:
    """`count` models spread round-robin over the use cases, 64 at a time."""
    models: list[hr.Model | None] = [None] * count

    async def create(index: int) -> None:
        use_case_id = sim.use_case_ids[index % len(sim.use_case_ids)]
        models[index] = await client.models.create(
            use_case_id=use_case_id,
            name=f"{prefix}-{index:06d}",
            from_model_id=sim.base_model_of(use_case_id),
            train_sample_ids=[f"{prefix}-{index}-train"],
            test_sample_ids=[f"{prefix}-{index}-test"],
        )

    await drive(create, range(count), 64)
    return [m for m in models if m is not None]


async def listed_models(
    client: hr.HappyRobotClient, sim: SimProcess, prefix: str
) -> list[hr.Model]:
    """The models an earlier repetition created (named `prefix-...`), one list per use case."""
    found = []
    for use_case_id in sim.use_case_ids:
        listed = await client.models.list(use_case_id=use_case_id)
        found += [model for model in listed if model.name.startswith(f"{prefix}-")]
    return found


async def phase(args: argparse.Namespace, sim: SimProcess) -> dict[str, Any]:
    """One phase (`args.phase`): see the module docstring."""
    interval, recorder = args.interval, Recorder()
    bulk_count = args.models - args.probes
    async with (
        aiohttp.ClientSession() as session,
        hr.HappyRobotClient(api_key=sim.api_key, base_url=sim.base_url) as client,
    ):
        created_at = time.monotonic()
        if args.reuse:
            bulk = await listed_models(client, sim, "bulk")
            assert len(bulk) == bulk_count, f"found {len(bulk)} models, not {bulk_count}"
        else:
            bulk = await create_many(client, sim, "bulk", bulk_count)
        create_seconds = time.monotonic() - created_at
        gc.collect()
        baseline = rss_bytes()
        follower = await _Follower.start(args.phase, client, interval, recorder)
        try:
            for model in bulk:
                follower.follow(model)
            while recorder.first_seen < len(bulk):  # noqa: ASYNC110
                await asyncio.sleep(interval / 10)
            first_cycle_seconds = time.monotonic() - created_at - create_seconds
            await sim.reset(session)
            probes = []
            for index in range(args.probes):
                use_case_id = sim.use_case_ids[index % len(sim.use_case_ids)]
                sent = time.monotonic()
                model = await client.models.create(
                    use_case_id=use_case_id,
                    name=f"probe-{index:04d}",
                    from_model_id=sim.base_model_of(use_case_id),
                    train_sample_ids=[f"probe-{index}-train"],
                    test_sample_ids=[f"probe-{index}-test"],
                )
                probes.append((model, sent, time.monotonic()))
                recorder.watch(model.id)
                follower.follow(model)
                await asyncio.sleep(interval / args.probes * 1.37)  # spread over the phase
            stats = await sim.stats(session)
            probe_arrivals = [e["time"] for e in stats["log"] if e["route"] == "create"]
            await sim.reset(session)
            cpu0, wall0 = time.process_time(), time.monotonic()
            peak = rss_bytes()
            while time.monotonic() < wall0 + args.cycles * interval:
                await asyncio.sleep(interval / 4)
                peak = max(peak, rss_bytes())
            cpu1, wall1 = time.process_time(), time.monotonic()
            window = await sim.stats(session)
            live = follower.live()
            deadline = 2 * args.lifetime + 4 * interval + 10
            await asyncio.wait_for(follower.finish([m.id for m, _, _ in probes]), deadline)
        finally:
            await follower.close()
    return {
        "phase": args.phase,
        "models": args.models,
        "use_cases": len(sim.use_case_ids),
        "create_seconds": create_seconds,
        "models_reused": bool(args.reuse),
        "first_cycle_seconds": first_cycle_seconds,
        "live_at_window_end": live,
        "window": _window(window, wall1 - wall0, cpu1 - cpu0, interval, args.phase, live),
        "rss_baseline_mb": baseline / 2**20,
        "rss_over_baseline_mb": (peak - baseline) / 2**20,
        "latencies": _latencies(probes, probe_arrivals, recorder, args.lifetime),
    }


class _Follower:
    """Follows models with a `TrainingWatcher` or with one polling task per model."""

    def __init__(
        self, kind: str, client: hr.HappyRobotClient, interval: float, recorder: Recorder
    ) -> None:
        self.kind, self.client, self.interval, self.recorder = kind, client, interval, recorder
        self.tasks: dict[str, asyncio.Task[hr.Model]] = {}
        self.probes: dict[str, hr.WatchHandle] = {}  # the watcher's handles of the probes
        self.watcher: hr.TrainingWatcher | None = None
        self.consumer: asyncio.Task[None] | None = None
        self.rng = random.Random(0)

    @classmethod
    async def start(
        cls, kind: str, client: hr.HappyRobotClient, interval: float, recorder: Recorder
    ) -> _Follower:
        follower = cls(kind, client, interval, recorder)
        if kind == "watcher":
            watcher = client.watcher(poll_interval=interval, max_poll_interval=interval)
            follower.watcher = await watcher.__aenter__()
            stream = watcher.changes(queue_size=1_000_000)
            follower.consumer = asyncio.create_task(follower._consume(stream))
        return follower

    async def _consume(self, stream: hr.ChangeStream) -> None:
        async for change in stream:
            previous = None if change.previous is None else str(change.previous)
            self.recorder.note(change.model.id, previous, str(change.current))

    def follow(self, model: hr.Model) -> None:
        if self.watcher is not None:
            handle = self.watcher.track(model)
            if model.id in self.recorder.seen:
                self.probes[model.id] = handle
        else:
            self.tasks[model.id] = asyncio.create_task(self._poll(model.id))

    async def _poll(self, model_id: str) -> hr.Model:
        """The naive way: get, note a change, sleep, until terminal.

        Each task starts at a random point of its first interval, as models of a real
        program arrive at random moments (the lifecycle here is a whole number of
        intervals, which would otherwise line polls up with transitions).
        """
        await asyncio.sleep(self.rng.uniform(0, self.interval))
        last: str | None = None
        while True:
            model = await self.client.models.get(model_id)
            if model.raw_status != last:
                self.recorder.note(model_id, last, model.raw_status)
                last = model.raw_status
            if model.status.is_terminal:
                return model
            await asyncio.sleep(self.interval)

    def live(self) -> int:
        if self.watcher is not None:
            return len(self.watcher)  # a model is followed until its handle is done
        return sum(1 for task in self.tasks.values() if not task.done())

    async def finish(self, model_ids: Sequence[str]) -> None:
        if self.watcher is not None:
            await asyncio.gather(*(self.probes[i] for i in model_ids))
        else:
            await asyncio.gather(*(self.tasks[i] for i in model_ids))
        await asyncio.sleep(0.05)  # let the change consumer catch up

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.aclose()
        if self.consumer is not None:
            await self.consumer
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


def _window(
    stats: dict[str, Any], seconds: float, cpu: float, interval: float, kind: str, live: int
) -> dict[str, Any]:
    """Requests, cycles and CPU over the measuring window."""
    by_route = {route: sum(c.values()) for route, c in stats["requests"].items()}
    lists: dict[str, list[float]] = defaultdict(list)
    for entry in stats["log"]:
        if entry["route"] == "list":
            use_case = parse_qs(urlsplit(entry["path"]).query).get("use_case_id", ["?"])[0]
            lists[use_case].append(entry["time"])
    if kind == "watcher":  # a cycle: every use case listed once (each list refreshes all)
        gaps = [b - a for times in lists.values() for a, b in itertools.pairwise(times)]
        period = statistics.median(gaps) if gaps else seconds
        listed = sum(len(times) for times in lists.values())
        cycles = listed / len(lists) if lists else 1.0
    else:  # a cycle: every task has made one get
        gets = by_route.get("get", 0)
        cycles = gets / live if gets and live else 1.0
        period = seconds / cycles
    total = stats["total_requests"]
    return {
        "seconds": seconds,
        "requests": total,
        "requests_by_route": by_route,
        "use_cases_listed": len(lists),
        "cycle_seconds": period,
        "cycles": cycles,
        "requests_per_cycle": total / cycles,
        "requests_per_interval": total / (seconds / interval),
        "cpu_ms_per_cycle": cpu / cycles * 1000,
        "cpu_share": cpu / seconds,
    }


def _latencies(
    probes: list[tuple[hr.Model, float, float]],
    arrivals: list[float],
    recorder: Recorder,
    lifetime: float,
) -> dict[str, Any]:
    """Seconds from each probe transition (in the simulator) to its sighting (here)."""
    samples, brackets, stamped = [], [], 0
    for index, (model, sent, received) in enumerate(probes):
        stored = (sent + received) / 2
        if index < len(arrivals) and sent <= arrivals[index] <= received:
            stored, stamped = arrivals[index], stamped + 1
        brackets.append(received - sent)
        for previous, current, seen in recorder.seen.get(model.id, []):
            if previous is None:
                continue
            offset = lifetime if current == "training" else 2 * lifetime
            samples.append(seen - (stored + offset))
    return {
        "samples": samples,
        "probes": len(probes),
        "stamped_by_server": stamped,
        "max_create_round_trip": max(brackets, default=0.0),
    }


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase against its own simulator, or the parent's (the child process's job)."""
    if args.attach:
        return asyncio.run(phase(args, _attached(json.loads(args.attach))))
    with simulator(*sim_args(args.use_cases, args.lifetime), seed=args.seed) as sim:
        return asyncio.run(phase(args, sim))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both phases, each in its own process, `repeat` times; then the large phase; aggregated."""
    if args.phase:
        return child(args)
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for kind in rotated(list(PHASES), rep):
            models = args.models if kind == "watcher" else args.naive_models
            sizes = _Sizes(models, args.use_cases, args.probes, args.lifetime)
            runs.append(_spawn(args, kind, sizes, rep))
            _progress(rep, kind, runs[-1])
    large = _Sizes(args.large_models, args.large_use_cases, 0, args.large_lifetime)
    large_runs = []
    with simulator(*sim_args(large.use_cases, large.lifetime), seed=0) as sim:
        for rep in range(args.large_repeat):
            large_runs.append(_spawn(args, "watcher", large, rep, sim, reuse=rep > 0))
            _progress(rep, "large", large_runs[-1])
    return {
        "benchmark": "watcher_scale",
        "settings": {
            "models": args.models,
            "naive_models": args.naive_models,
            "use_cases": args.use_cases,
            "interval": args.interval,
            "cycles": args.cycles,
            "probes": args.probes,
            "lifetime": args.lifetime,
            "repeat": args.repeat,
            "large_models": args.large_models,
            "large_use_cases": args.large_use_cases,
            "large_lifetime": args.large_lifetime,
            "large_repeat": args.large_repeat,
        },
        "targets": TARGETS,
        "simulator": display_command(
            simulate_command(*sim_args(args.use_cases, args.lifetime), seed=0)
        ),
        "large_simulator": display_command(
            simulate_command(*sim_args(large.use_cases, large.lifetime), seed=0)
        ),
        "runs": runs,
        "large_runs": large_runs,
        "summary": {
            **{kind: _summarize([r for r in runs if r["phase"] == kind]) for kind in PHASES},
            "large": _summarize(large_runs),
        },
    }


class _Sizes(NamedTuple):
    models: int
    use_cases: int
    probes: int
    lifetime: float


def _progress(rep: int, kind: str, result: dict[str, Any]) -> None:
    w = result["window"]
    print(
        f"rep {rep} {kind}: {w['requests_per_cycle']:.1f} req/cycle, "
        f"cycle {w['cycle_seconds']:.2f} s, {w['cpu_ms_per_cycle']:.0f} ms CPU/cycle "
        f"({w['cpu_ms_per_cycle'] * 1000 / result['models']:.2f} µs/model), "
        f"+{result['rss_over_baseline_mb']:.1f} MB, "
        f"p50 {_p(result['latencies']['samples'], 50):.3f} s",
        flush=True,
    )


def _spawn(
    args: argparse.Namespace,
    kind: str,
    sizes: _Sizes,
    rep: int,
    sim: SimProcess | None = None,
    *,
    reuse: bool = False,
) -> dict[str, Any]:
    """Run one phase in a child process: against `sim` if given, else its own simulator."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "phase.json"
        command = [
            sys.executable, "-m", "benchmarks.watcher_scale", "--phase", kind,
            "--models", str(sizes.models), "--use-cases", str(sizes.use_cases),
            "--interval", str(args.interval), "--cycles", str(args.cycles),
            "--probes", str(sizes.probes), "--lifetime", str(sizes.lifetime),
            "--seed", str(rep), "--json", str(out),
        ]  # fmt: skip
        if sim is not None:
            command += ["--attach", json.dumps(_attachment(sim))]
        if reuse:
            command.append("--reuse")
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def _attachment(sim: SimProcess) -> dict[str, Any]:
    """What a child needs to use a simulator it did not start."""
    names = ("base_url", "api_key", "use_case_ids", "base_model_ids", "stats_url")
    return {name: getattr(sim, name) for name in names}


def _attached(info: dict[str, Any]) -> SimProcess:
    """The parent's simulator (the child neither started it nor stops it)."""
    return SimProcess(process=cast("subprocess.Popen[str]", None), command=[], **info)


def _p(samples: Sequence[float], pct: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {}
    windows = [r["window"] for r in runs]
    samples = [s for r in runs for s in r["latencies"]["samples"]]
    models = runs[0]["models"]
    return {
        "models": models,
        "requests_per_cycle": summary([w["requests_per_cycle"] for w in windows]),
        "requests_per_interval": summary([w["requests_per_interval"] for w in windows]),
        "requests_per_model_cycle": summary([w["requests_per_cycle"] / models for w in windows]),
        "cycle_seconds": summary([w["cycle_seconds"] for w in windows]),
        "cpu_ms_per_cycle": summary([w["cpu_ms_per_cycle"] for w in windows]),
        "cpu_us_per_model_cycle": summary([w["cpu_ms_per_cycle"] * 1000 / models for w in windows]),
        "cpu_share": summary([w["cpu_share"] for w in windows]),
        "rss_mb": summary([r["rss_over_baseline_mb"] for r in runs]),
        "rss_kb_per_model": summary([r["rss_over_baseline_mb"] * 1024 / models for r in runs]),
        "latency_p50": summary([_p(r["latencies"]["samples"], 50) for r in runs]),
        "latency_p95": summary([_p(r["latencies"]["samples"], 95) for r in runs]),
        "latency_max": summary([max(r["latencies"]["samples"], default=0.0) for r in runs]),
        "latency_samples": len(samples),
        "all_live": all(r["live_at_window_end"] == models for r in runs),
        "use_cases_listed": summary([w["use_cases_listed"] for w in windows]),
        "gets_in_window": sum(w["requests_by_route"].get("get", 0) for w in windows),
        "stamped": sum(r["latencies"]["stamped_by_server"] for r in runs),
        "probes": sum(r["latencies"]["probes"] for r in runs),
        "create_seconds": summary([r["create_seconds"] for r in runs]),
    }


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """Each target against the worst repetition: (figure, measured, target, met)."""
    s, summaries = result["settings"], result["summary"]
    w, large = summaries["watcher"], summaries.get("large") or {}
    limit = s["interval"] + TARGETS["latency_over_interval_s"]
    worst_latency = w["latency_max"]["max"]
    per_use_case = TARGETS["requests_per_use_case_cycle"]
    rows = [
        (
            f"{w['models']:,} models: change → event, worst sample of every repetition",
            f"{worst_latency:.3f} s",
            f"≤ I + {TARGETS['latency_over_interval_s']:g} s = {limit:.2f} s",
            worst_latency <= limit,
        ),
        (
            f"{w['models']:,} models / {s['use_cases']} use cases: requests per cycle",
            f"{w['requests_per_cycle']['max']:.1f}",
            f"≤ {per_use_case * s['use_cases']:g} (one list per use case)",
            w["requests_per_cycle"]["max"] <= per_use_case * s["use_cases"] + 1e-9,
        ),
    ]
    if large:
        cpu, rss = large["cpu_us_per_model_cycle"]["max"], large["rss_kb_per_model"]["max"]
        requests, use_cases = large["requests_per_cycle"]["max"], s["large_use_cases"]
        rows += [
            (
                f"{large['models']:,} models / {use_cases} use cases: requests per cycle",
                f"{requests:.1f}",
                f"≤ {per_use_case * use_cases:g} (one list per use case)",
                requests <= per_use_case * use_cases + 1e-9,
            ),
            (
                f"{large['models']:,} models: CPU per model per cycle",
                f"{cpu:.2f} µs",
                f"≤ {TARGETS['cpu_us_per_model_cycle']:g} µs",
                cpu <= TARGETS["cpu_us_per_model_cycle"],
            ),
            (
                f"{large['models']:,} models: RSS over baseline per model",
                f"{rss:.2f} KB",
                f"≤ {TARGETS['rss_kb_per_model']:g} KB",
                rss <= TARGETS["rss_kb_per_model"],
            ),
        ]
    return rows


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    s, w, n = result["settings"], result["summary"]["watcher"], result["summary"]["naive"]
    large = result["summary"].get("large") or {}
    interval = s["interval"]

    def cells(key: str, digits: int, naive_digits: int | None = None) -> list[str]:
        """The row's figures: watcher, naive, and the large phase (no latency: no probes)."""
        row = [fmt(w[key], digits), fmt(n[key], digits if naive_digits is None else naive_digits)]
        if large:
            measured = large["latency_samples"] or not key.startswith("latency")
            row.append(fmt(large[key], digits) if measured else "—")
        return row

    rows = [
        ["models followed", f"{w['models']:,}", f"{n['models']:,}"]
        + ([f"{large['models']:,}"] if large else []),
        ["requests per cycle", *cells("requests_per_cycle", 1, 0)],
        ["requests per model per cycle", *cells("requests_per_model_cycle", 4, 2)],
        [f"requests per {interval:g} s interval", *cells("requests_per_interval", 1, 0)],
        ["cycle (s), observed", *cells("cycle_seconds", 2)],
        ["CPU per cycle (ms)", *cells("cpu_ms_per_cycle", 0)],
        ["CPU per model per cycle (µs)", *cells("cpu_us_per_model_cycle", 2, 1)],
        ["client CPU share while following", *cells("cpu_share", 3)],
        ["RSS over baseline (MB)", *cells("rss_mb", 1)],
        ["RSS per model (KB)", *cells("rss_kb_per_model", 2)],
        ["change → event, p50 (s)", *cells("latency_p50", 3)],
        ["change → event, p95 (s)", *cells("latency_p95", 3)],
        ["change → event, max (s)", *cells("latency_max", 3)],
    ]
    header = ["", f"TrainingWatcher ({s['use_cases']} use cases)", "naive: task per model"]
    if large:
        header.append(f"TrainingWatcher ({s['large_use_cases']} use cases, steady state)")
    targets = [
        [figure, measured, target, "**met**" if met else "**missed**"]
        for figure, measured, target, met in verdicts(result)
    ]
    lines = [
        f"{s['repeat']} repetitions ({s.get('large_repeat', 0)} at "
        f"{s.get('large_models', 0):,} models); poll interval I = {interval:g} s "
        "(`poll_interval=max_poll_interval=I`), "
        f"window of {s['cycles']} intervals with every model live; median (min\u2013max).",
        "",
        table(header, rows),
        "",
        f"Latency samples: watcher {w['latency_samples']}, naive {n['latency_samples']} "
        f"(2 transitions per probe; {w['stamped'] + n['stamped']} of "
        f"{w['probes'] + n['probes']} probes stamped by the simulator's log, the rest by "
        f"the create's round-trip midpoint). Every model live through the window: "
        f"watcher {w['all_live']}, naive {n['all_live']}"
        + (f", large {large['all_live']}" if large else "")
        + f". Use cases listed per window: {fmt(w['use_cases_listed'], 0)}"
        + (f" and {fmt(large['use_cases_listed'], 0)}" if large else "")
        + f"; gets made by the watcher in the windows: {w['gets_in_window']}"
        + (f" and {large['gets_in_window']}" if large else "")
        + f". Creating the watcher's models took {fmt(w['create_seconds'], 1)} s"
        + (f" ({large['models']:,}: {large['create_seconds']['max']:.0f} s, once)" if large else "")
        + ".",
        "",
        f"The {w['models']:,}-model window sees the bulk models' first transition (they are "
        f"pending L = {s['lifetime']:g} s), so its CPU counts structuring and reporting every "
        "model's change once; the large phase's window sees no change (steady state).",
        "",
        "Targets (issue 13), each on the worst repetition:",
        "",
        table(["figure", "measured", "target", ""], targets),
    ]
    if "large_simulator" in result:
        lines += ["", f"Large phase's simulator: `{result['large_simulator']}`."]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes."""
    parser.add_argument("--models", type=int, default=10_000, help="watched by the watcher")
    parser.add_argument("--naive-models", type=int, default=1000, help="one task each")
    parser.add_argument("--use-cases", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval I, s")
    parser.add_argument("--cycles", type=int, default=4, help="intervals in the window")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--lifetime", type=float, default=10.0, help="L: s pending, s training")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--large-models", type=int, default=100_000, help="large phase, watcher")
    parser.add_argument("--large-use-cases", type=int, default=100)
    parser.add_argument(
        "--large-lifetime", type=float, default=900.0, help="s pending: longer than the phase"
    )
    parser.add_argument("--large-repeat", type=int, default=3)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--attach", help=argparse.SUPPRESS)  # the parent's simulator, as JSON
    parser.add_argument("--reuse", action="store_true", help=argparse.SUPPRESS)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke and not args.phase:
        args.models, args.naive_models, args.repeat = 200, 40, 1
        args.interval, args.cycles, args.probes, args.lifetime = 0.2, 3, 4, 0.8
        args.large_models, args.large_use_cases, args.large_repeat = 300, 3, 2
        args.large_lifetime = 60.0
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.watcher_scale [--models N] [--interval I] [--repeat R] ...`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, _render_any, argv)


def _render_any(result: dict[str, Any]) -> str:
    return render(result) if "summary" in result else json.dumps(result["window"], indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
