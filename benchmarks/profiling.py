"""Profiles of the SDK's request path and the watcher's poll loop, and the poll loop's decode cost.

1. cProfile over `client.models.get` / `create` at concurrency 64 against a standalone
   simulator (N requests each, after a warm-up; the simulator's counters confirm the
   count), and over a `TrainingWatcher` following 10,000 models in 10 use cases:
   where the client's CPU goes, by package and by function (cProfile inflates pure
   Python calls, so read shares, not absolute times).
2. The poll loop's decode: µs per model of `decode_models` on a 1,000-model list
   body, against `json.loads` of the same body alone.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import aiohttp

import happyrobot_async as hr
from happyrobot_async import _wire
from happyrobot_async.client import HappyRobotClient

from ._common import SimProcess, fmt, main_for, simulator, summary, table
from .structuring import FULL
from .throughput import Sdk, create_bodies, drive
from .watcher_scale import create_many

# -- 1. profiles ------------------------------------------------------------------------------


def _group(filename: str) -> str:
    for package in ("happyrobot_async", "aiohttp", "cattrs", "backoff", "attrs", "yarl", "json"):
        if f"/{package}/" in filename or filename.startswith("<cattrs generated"):
            return "cattrs (generated)" if filename.startswith("<cattrs") else package
    if filename.startswith("<attrs generated"):
        return "attrs (generated)"
    if "/asyncio/" in filename:
        return "asyncio"
    if filename == "~":
        return "builtins"
    return "other"


def _short(filename: str) -> str:
    """A path without this machine's prefixes: `aiohttp/client.py`, `json/decoder.py`."""
    return re.sub(r"^.*?/(?:site-packages|python3\.\d+)/|^.*?/(?=happyrobot_async/)", "", filename)


def digest(profiler: cProfile.Profile, top: int) -> dict[str, Any]:
    """Self time by package (share of the busy time) and the top functions by self time."""
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_group: dict[str, float] = defaultdict(float)
    functions = []
    idle = 0.0
    for (filename, line, name), (_, calls, self_time, cumulative, _) in raw.items():
        if name in ("<method 'poll' of 'select.epoll' objects>",):
            idle += self_time
            continue
        group = _group(filename)
        by_group[group] += self_time
        short = _short(filename)
        functions.append((self_time, calls, cumulative, f"{short}:{line}({name})"))
    busy = sum(by_group.values()) or 1.0
    functions.sort(reverse=True)
    return {
        "busy_seconds": busy,
        "idle_seconds": idle,
        "groups": sorted(((g, t / busy) for g, t in by_group.items()), key=lambda x: -x[1]),
        "top": [
            {"function": f, "calls": c, "self_share": s / busy, "cumulative_share": cum / busy}
            for s, c, cum, f in functions[:top]
        ],
    }


async def profile_requests(sim: SimProcess, n: int) -> dict[str, Any]:
    """cProfile `n` of the SDK's gets and `n` creates at concurrency 64, after 128 to warm up."""
    out = {}
    ids = await _pool(sim)
    async with aiohttp.ClientSession() as session:
        for op in ("get", "create"):
            variant = Sdk(sim, 64)
            inputs: list[Any] = (
                [ids[i % len(ids)] for i in range(128 + n)]
                if op == "get"
                else create_bodies(sim, "profile", 128 + n)
            )
            call = variant.get if op == "get" else variant.create
            await drive(call, inputs[:128], 64)
            await sim.reset(session)
            profiler = cProfile.Profile()
            profiler.enable()
            await drive(call, inputs[128:], 64)
            profiler.disable()
            served = (await sim.stats(session))["total_requests"]
            await variant.aclose()
            out[op] = {**digest(profiler, 14), "requests": served}
    return out


async def profile_poll_loop(sim: SimProcess, models: int, seconds: float) -> dict[str, Any]:
    """cProfile a watcher following `models` models for `seconds` (poll interval 1 s)."""
    async with HappyRobotClient(api_key=sim.api_key, base_url=sim.base_url) as client:
        bulk = await create_many(client, sim, "poll", models)
        async with client.watcher(poll_interval=1.0, max_poll_interval=1.0) as watcher:
            for model in bulk:
                watcher.track(model)
            await asyncio.sleep(1.5)
            profiler = cProfile.Profile()
            profiler.enable()
            await asyncio.sleep(seconds)
            profiler.disable()
    return digest(profiler, 14)


async def _pool(sim: SimProcess) -> list[str]:
    async with aiohttp.ClientSession(headers=sim.headers) as session:
        ids = []
        for body in create_bodies(sim, "pool", 64):
            async with session.post(f"{sim.base_url}/models", json=body) as response:
                ids.append((await response.json())["id"])
    return ids


# -- 2. the poll loop's decode ----------------------------------------------------------------


def decode_cost(repeat: int, size: int = 1000) -> dict[str, Any]:
    """µs per model of `decode_models` on a `size`-model list body, and of `json.loads` alone."""
    item = {k: v for k, v in FULL.items() if not k.endswith("_sample_ids")}
    body = json.dumps([dict(item, id=f"{i:024x}") for i in range(size)]).encode()
    assert len(_wire.decode_models(200, {}, body).models) == size  # and warm
    ours: list[float] = []
    json_loads: list[float] = []
    for _ in range(repeat):
        for decode, times in (
            (lambda: _wire.decode_models(200, {}, body), ours),
            (lambda: json.loads(body), json_loads),
        ):
            started = time.perf_counter()
            for _ in range(20):
                decode()
            times.append((time.perf_counter() - started) / 20 / size * 1e6)
    return {
        "models": size,
        "ours": summary(ours),
        "json_loads": summary(json_loads),
        "ratio": summary([o / j for o, j in zip(ours, json_loads, strict=True)]),
    }


# -- running and rendering ----------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Profiles, then the decode cost."""
    with simulator("--use-cases", "3", seed=1) as sim:
        requests = asyncio.run(profile_requests(sim, args.requests))
    with simulator("--use-cases", "10", "--pending", "600,600", seed=2) as sim:
        poll = asyncio.run(profile_poll_loop(sim, args.models, args.seconds))
    return {
        "benchmark": "profiling",
        "requests": args.requests,
        "models": args.models,
        "seconds": args.seconds,
        "repeat": args.repeat,
        "profiles": {**requests, "poll loop": poll},
        "decode": decode_cost(args.repeat),
        "sdk_version": hr.__version__,
    }


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    out = [
        f"cProfile, SDK at concurrency 64 ({result['requests']:,} requests per operation) and a "
        f"watcher following {result['models']:,} models (10 use cases, 1 s interval, "
        f"{result['seconds']:g} s profiled). Self time by package, as a share of the "
        "client's busy (non-idle) time:",
        "",
    ]
    names = list(result["profiles"])
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for name in names:
        for group, share in result["profiles"][name]["groups"]:
            groups[group][name] = share
    ordered = sorted(groups, key=lambda g: -max(groups[g].values()))
    rows = [[g, *(f"{groups[g].get(n, 0.0):.0%}" for n in names)] for g in ordered]
    out += [table(["package", *names], rows), ""]
    for name in names:
        top = result["profiles"][name]["top"][:10]
        out += [
            f"Top functions by self time — {name}:",
            "",
            table(
                ["function", "calls", "self", "cumulative"],
                [
                    [
                        f"`{_short(t['function'])}`",
                        f"{t['calls']:,}",
                        f"{t['self_share']:.1%}",
                        f"{t['cumulative_share']:.1%}",
                    ]
                    for t in top
                ],
            ),
            "",
        ]
    d = result["decode"]
    out.append(
        f"Poll-loop decode (`decode_models`, {d['models']:,}-model list body, "
        f"{result['repeat']} repetitions): {fmt(d['ours'], 2)} µs per model; `json.loads` "
        f"alone {fmt(d['json_loads'], 2)} µs (ratio {fmt(d['ratio'], 2)})."
    )
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes."""
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=5)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        args.requests, args.models, args.seconds, args.repeat = 120, 100, 0.3, 1
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.profiling [--requests N] [--models M] [--repeat R]`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, argv)


if __name__ == "__main__":
    raise SystemExit(main())
