"""Profiles of the SDK's request path and the watcher's poll loop, and measured what-ifs.

1. cProfile over `client.models.get` / `create` at concurrency 64 against a standalone
   simulator, and over a `TrainingWatcher` following 10,000 models in 10 use cases:
   where the client's CPU goes, by package and by function (cProfile inflates pure
   Python calls, so read shares, not absolute times).
2. What-ifs, measured like the throughput benchmark (paired, taking turns chunk by
   chunk, client CPU µs per request): each change is applied to this process only
   (monkeypatched), the SDK's files are untouched. `fast read` = `_read` makes its
   first attempt directly and enters the `backoff` machinery only after a failure; `converter` = the
   structuring hooks of `structuring.suggested_converter()`.
3. The poll loop's decode: µs per model of `decode_models` on a 1,000-model list
   body, with our converter and the suggested one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import json
import pstats
import re
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiohttp

import happyrobot_async as hr
from happyrobot_async import _wire
from happyrobot_async.client import HappyRobotClient

from ._common import SimProcess, fmt, main_for, rotated, simulator, summary, table
from .structuring import FULL, suggested_converter
from .throughput import RawAiohttp, Sdk, create_bodies, drive
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
    """cProfile the SDK's get and create at concurrency 64."""
    out = {}
    ids = await _pool(sim)
    for op in ("get", "create"):
        variant = Sdk(sim, 64)
        inputs: list[Any] = (
            [ids[i % len(ids)] for i in range(n)]
            if op == "get"
            else create_bodies(sim, "profile", n)
        )
        call = variant.get if op == "get" else variant.create
        await drive(call, inputs[:128], 64)
        profiler = cProfile.Profile()
        profiler.enable()
        await drive(call, inputs[128:], 64)
        profiler.disable()
        await variant.aclose()
        out[op] = digest(profiler, 14)
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


# -- 2. what-ifs --------------------------------------------------------------------------------


async def _fast_read(
    self: HappyRobotClient, request: _wire.Request, decode: Callable[..., Any]
) -> Any:
    """`_read` with the first attempt made directly; `backoff` only after a failure."""
    try:
        response = await self._send(request, 1)
        value = decode(response.status, response.headers, response.body)
    except Exception:
        return await self._read_with_retries(request, decode, itertools.count(2))
    self.retry_budget.refund()
    return value


@contextlib.contextmanager
def _converter(use: bool) -> Iterator[None]:
    original = vars(_wire)["converter"]
    if use:
        vars(_wire)["converter"] = suggested_converter()
    try:
        yield
    finally:
        vars(_wire)["converter"] = original


WHAT_IFS = {
    "get": ["raw", "sdk", "sdk + fast read", "sdk + fast read + converter"],
    "create": ["raw", "sdk", "sdk + converter"],
}


async def what_ifs(sim: SimProcess, n: int, repeat: int) -> dict[str, Any]:
    """Client CPU µs per request of each variant, paired per repetition, turns by chunk."""
    ids = await _pool(sim)
    runs: dict[str, dict[str, list[float]]] = {
        op: {name: [] for name in names} for op, names in WHAT_IFS.items()
    }
    for rep in range(repeat):
        for op, names in WHAT_IFS.items():
            for name, value in (await _cpu_per_request(sim, op, names, n, ids, rep)).items():
                runs[op][name].append(value)
    out: dict[str, Any] = {}
    for op, by_name in runs.items():
        sdk, raw = by_name["sdk"], by_name["raw"]
        out[op] = {
            name: {
                "cpu_us": summary(values),
                "vs_raw": summary([v / r for v, r in zip(values, raw, strict=True)]),
                "vs_sdk": summary([v / s for v, s in zip(values, sdk, strict=True)]),
            }
            for name, values in by_name.items()
        }
    return out


async def _cpu_per_request(
    sim: SimProcess, op: str, names: Sequence[str], n: int, ids: list[str], rep: int
) -> dict[str, float]:
    variants: dict[str, RawAiohttp | Sdk] = {}
    for name in names:
        variant: RawAiohttp | Sdk = RawAiohttp(sim, 64) if name == "raw" else Sdk(sim, 64)
        if "fast read" in name:
            client = variant._client  # type: ignore[union-attr]
            client._read = types.MethodType(_fast_read, client)  # type: ignore[method-assign]
        variants[name] = variant
    cpu = dict.fromkeys(names, 0.0)
    size = max(256, n // 10)
    try:
        for turn, start in enumerate([-1, *range(0, n, size)]):
            for name in rotated(list(names), turn + rep):
                count = 128 if start < 0 else min(size, n - start)
                inputs: list[Any] = (
                    [ids[i % len(ids)] for i in range(count)]
                    if op == "get"
                    else create_bodies(sim, f"w{rep}-{turn}-{name.replace(' ', '')}", count)
                )
                call = variants[name].get if op == "get" else variants[name].create
                with _converter("converter" in name):
                    gc.collect()
                    spent = time.process_time()
                    await drive(call, inputs, 64)
                    spent = time.process_time() - spent
                if start >= 0:  # the first turn warms the pools up
                    cpu[name] += spent
    finally:
        for variant in variants.values():
            await variant.aclose()
    return {name: spent / n * 1e6 for name, spent in cpu.items()}


# -- 3. the poll loop's decode ----------------------------------------------------------------


def decode_cost(repeat: int, size: int = 1000) -> dict[str, Any]:
    """µs per model of `decode_models` on a `size`-model list body."""
    item = {k: v for k, v in FULL.items() if not k.endswith("_sample_ids")}
    body = json.dumps([dict(item, id=f"{i:024x}") for i in range(size)]).encode()
    results: dict[str, list[float]] = {"ours": [], "suggested": []}
    for rep in range(repeat):
        for name in rotated(list(results), rep):
            with _converter(name == "suggested"):
                _wire.decode_models(200, {}, body)
                started = time.perf_counter()
                for _ in range(20):
                    _wire.decode_models(200, {}, body)
                results[name].append((time.perf_counter() - started) / 20 / size * 1e6)
    json_only = time.perf_counter()
    for _ in range(20):
        json.loads(body)
    json_us = (time.perf_counter() - json_only) / 20 / size * 1e6
    return {
        "ours": summary(results["ours"]),
        "suggested": summary(results["suggested"]),
        "ratio": summary(
            [s / o for s, o in zip(results["suggested"], results["ours"], strict=True)]
        ),
        "json_loads_us": json_us,
    }


# -- running and rendering ----------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Profiles, then what-ifs, then the decode cost."""
    with simulator("--use-cases", "3", seed=1) as sim:
        requests = asyncio.run(profile_requests(sim, args.requests))
    with simulator("--use-cases", "10", "--pending", "600,600", seed=2) as sim:
        poll = asyncio.run(profile_poll_loop(sim, args.models, args.seconds))
    with simulator("--use-cases", "3", seed=3) as sim:
        whatif = asyncio.run(what_ifs(sim, args.requests, args.repeat))
    return {
        "benchmark": "profiling",
        "requests": args.requests,
        "models": args.models,
        "seconds": args.seconds,
        "repeat": args.repeat,
        "profiles": {**requests, "poll loop": poll},
        "what_ifs": whatif,
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
    out += [
        f"What-ifs at concurrency 64, client CPU µs per request, {result['requests']:,} "
        f"requests, {result['repeat']} repetitions; median (min\u2013max):",
        "",
    ]
    rows = []
    for op, variants in result["what_ifs"].items():
        for name, row in variants.items():
            rows.append(
                [op, name, fmt(row["cpu_us"]), fmt(row["vs_raw"], 3), fmt(row["vs_sdk"], 3)]
            )
    out += [table(["op", "variant", "CPU µs/req", "÷ raw", "÷ sdk"], rows), ""]
    d = result["decode"]
    out.append(
        f"Poll-loop decode (`decode_models`, 1,000-model list body): ours "
        f"{fmt(d['ours'], 2)} µs per model, suggested converter {fmt(d['suggested'], 2)} "
        f"(ratio {fmt(d['ratio'], 2)}); `json.loads` alone {d['json_loads_us']:.2f} µs."
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
