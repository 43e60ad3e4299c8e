"""Throughput: raw aiohttp (the floor) vs this SDK vs an httpx + pydantic peer.

For each repetition, operation (get, create) and concurrency, a fresh standalone
simulator is started in its own process and every variant runs N requests against
it. The variants' clients are open side by side (each its own pool, warmed with
2 x concurrency requests); the timed N of each are cut into chunks (N/10, at least
4 x concurrency) and the variants take turns chunk by chunk in a rotated order, so
machine noise hits them alike.
Figures: requests/s (wall) and client CPU µs per request (`time.process_time()` of
this process over the timed requests), plus the server's CPU µs per request (its
/proc counters), and the paired ratios per repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import aiohttp

import happyrobot_async as hr
from happyrobot_async import _json

from ._common import SimProcess, display_command, fmt, main_for, rotated, simulator, summary, table
from .structuring import pydantic_model

VARIANTS = ("raw", "sdk", "httpx")
LABELS = {
    "raw": "raw aiohttp + json.loads",
    "sdk": "happyrobot_async",
    "httpx": "httpx + pydantic",
}
SAMPLE_IDS = [f"65a1f0c2e4b0a1b2c3d4e{i:03x}" for i in range(8)]


# -- the three clients ----------------------------------------------------------------------


class Variant(Protocol):
    """One way of calling the API."""

    async def get(self, model_id: str) -> Any: ...

    async def create(self, body: dict[str, Any]) -> Any: ...

    async def aclose(self) -> None: ...


class RawAiohttp:
    """The floor: one `aiohttp.ClientSession`, bytes in and out, `json.loads`."""

    def __init__(self, sim: SimProcess, concurrency: int) -> None:
        self._base = sim.base_url
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency), headers=sim.headers
        )

    async def get(self, model_id: str) -> Any:
        async with self._session.get(f"{self._base}/models/{model_id}") as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return json.loads(body)

    async def create(self, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode()
        async with self._session.post(f"{self._base}/models", data=data) as response:
            payload = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return json.loads(payload)

    async def aclose(self) -> None:
        await self._session.close()


class Sdk:
    """This SDK, as documented: `client.models.get` / `client.models.create`."""

    def __init__(self, sim: SimProcess, concurrency: int) -> None:
        self._client = hr.HappyRobotClient(
            api_key=sim.api_key, base_url=sim.base_url, max_concurrency=concurrency
        )

    async def get(self, model_id: str) -> hr.Model:
        return await self._client.models.get(model_id)

    async def create(self, body: dict[str, Any]) -> hr.Model:
        return await self._client.models.create(**body)

    async def aclose(self) -> None:
        await self._client.close()


def _httpx_peer(sim: SimProcess, concurrency: int) -> Variant:
    """The peer written the obvious way: `httpx.AsyncClient` + a pydantic `Model`."""
    import httpx

    found = pydantic_model()
    if found is None:
        raise RuntimeError("the httpx peer needs pydantic")
    validate: Callable[[dict[str, Any]], Any] = found

    class HttpxPeer:
        def __init__(self) -> None:
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            self._client = httpx.AsyncClient(
                base_url=sim.base_url, headers=sim.headers, limits=limits, timeout=60.0
            )

        async def get(self, model_id: str) -> Any:
            response = await self._client.get(f"/models/{model_id}")
            response.raise_for_status()
            return validate(response.json())

        async def create(self, body: dict[str, Any]) -> Any:
            response = await self._client.post("/models", json=body)
            response.raise_for_status()
            return validate(response.json())

        async def aclose(self) -> None:
            await self._client.aclose()

    return HttpxPeer()


def make_variant(name: str, sim: SimProcess, concurrency: int) -> Variant:
    """Open the client of variant `name`."""
    if name == "raw":
        return RawAiohttp(sim, concurrency)
    if name == "sdk":
        return Sdk(sim, concurrency)
    return _httpx_peer(sim, concurrency)


def available_variants(wanted: Sequence[str]) -> list[str]:
    """`wanted`, less the httpx peer if httpx or pydantic is not installed."""
    try:
        import httpx  # noqa: F401
        import pydantic  # noqa: F401
    except ImportError:
        return [name for name in wanted if name != "httpx"]
    return list(wanted)


# -- driving --------------------------------------------------------------------------------


async def drive(call: Callable[[Any], Awaitable[Any]], inputs: Iterable[Any], workers: int) -> None:
    """Run `call` over `inputs` with `workers` tasks pulling from one iterator."""
    pending = iter(inputs)

    async def worker() -> None:
        for item in pending:
            await call(item)

    await asyncio.gather(*(worker() for _ in range(workers)))


def create_bodies(sim: SimProcess, prefix: str, count: int) -> list[dict[str, Any]]:
    """Valid, distinct create bodies spread over the simulator's use cases."""
    bodies = []
    for i in range(count):
        use_case_id = sim.use_case_ids[i % len(sim.use_case_ids)]
        bodies.append(
            {
                "use_case_id": use_case_id,
                "name": f"{prefix}-{i:06d}",
                "from_model_id": sim.base_model_of(use_case_id),
                "train_sample_ids": SAMPLE_IDS[:6],
                "test_sample_ids": SAMPLE_IDS[6:],
                "explain_tools": True,
            }
        )
    return bodies


def chunk_size(n: int, concurrency: int) -> int:
    """Requests per turn: a tenth of N, but at least 4 x concurrency (a turn starts full)."""
    return min(n, max(n // 10, 4 * concurrency))


async def block(
    sim: SimProcess,
    op: str,
    concurrency: int,
    sizes: dict[str, int],
    order: Sequence[str],
    rep: int,
    make: Callable[[str, SimProcess, int], Variant] = make_variant,
) -> dict[str, dict[str, float]]:
    """Every variant N requests against one fresh simulator, taking turns in chunks.

    All clients are open at once (each with its own warmed pool); the N requests of
    each are cut into chunks, and the variants take turns chunk by chunk, in a
    rotated order, so a burst of machine noise hits all of them alike.
    """
    inputs: dict[str, list[Any]] = {}
    if op == "get":
        async with aiohttp.ClientSession(headers=sim.headers) as session:
            ids = []
            for body in create_bodies(sim, "pool", 64):
                async with session.post(f"{sim.base_url}/models", json=body) as response:
                    ids.append((await response.json())["id"])
        for name in order:
            inputs[name] = [ids[i % len(ids)] for i in range(sizes[name] + 2 * concurrency)]
    else:
        for name in order:
            prefix = f"{name}-r{rep}-c{concurrency}"
            inputs[name] = create_bodies(sim, prefix, sizes[name] + 2 * concurrency)
    variants = {name: make(name, sim, concurrency) for name in order}
    totals = {name: {"seconds": 0.0, "cpu": 0.0, "server": 0.0} for name in order}
    try:
        calls = {
            name: (variant.get if op == "get" else variant.create)
            for name, variant in variants.items()
        }
        for name in order:
            await drive(calls[name], inputs[name][: 2 * concurrency], concurrency)
        n = max(sizes.values())
        turns = math.ceil(n / chunk_size(n, concurrency))
        for turn in range(turns):
            for name in rotated(order, turn):
                size = math.ceil(sizes[name] / turns)
                start = 2 * concurrency + turn * size
                chunk = inputs[name][start : min(start + size, sizes[name] + 2 * concurrency)]
                gc.collect()
                cpu0, server0, wall0 = time.process_time(), sim.cpu_seconds(), time.perf_counter()
                await drive(calls[name], chunk, concurrency)
                wall1, cpu1, server1 = time.perf_counter(), time.process_time(), sim.cpu_seconds()
                total = totals[name]
                total["seconds"] += wall1 - wall0
                total["cpu"] += cpu1 - cpu0
                total["server"] += server1 - server0
    finally:
        for variant in variants.values():
            await variant.aclose()
    return {
        name: {
            "rps": sizes[name] / t["seconds"],
            "cpu_us": t["cpu"] / sizes[name] * 1e6,
            "server_cpu_us": t["server"] / sizes[name] * 1e6,
            "seconds": t["seconds"],
        }
        for name, t in totals.items()
    }


SIM_ARGS = ("--use-cases", "3")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every repetition x operation x concurrency block; the raw runs and the ratios."""
    variants = available_variants(args.variants)
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for op in args.ops:
            for concurrency in args.concurrency:
                order = rotated(variants, rep + len(runs))
                sizes = {
                    name: args.peer_requests if name == "httpx" else args.requests for name in order
                }
                with simulator(*SIM_ARGS, seed=rep) as sim:
                    results = asyncio.run(block(sim, op, concurrency, sizes, order, rep))
                runs.append(
                    {"rep": rep, "op": op, "concurrency": concurrency, "order": order, **results}
                )
                print(f"rep {rep} {op} c={concurrency}: " + _line(results), flush=True)
    return {
        "benchmark": "throughput",
        "requests": args.requests,
        "peer_requests": args.peer_requests,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "variants": variants,
        "json_backend": _json.BACKEND,
        "simulator": display_command(list(_sim_command())),
        "runs": runs,
        "summary": summarize(runs, variants, args.ops, args.concurrency),
    }


def _sim_command() -> list[str]:
    from ._common import simulate_command

    return simulate_command(*SIM_ARGS, seed=0)


def _line(results: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{name} {r['rps']:.0f} req/s {r['cpu_us']:.0f} µs" for name, r in results.items()
    )


def summarize(
    runs: list[dict[str, Any]], variants: Sequence[str], ops: Sequence[str], levels: Sequence[int]
) -> list[dict[str, Any]]:
    """Per operation and concurrency: each variant's figures and the paired ratios."""
    rows = []
    for op in ops:
        for concurrency in levels:
            block_runs = [r for r in runs if r["op"] == op and r["concurrency"] == concurrency]
            if not block_runs:
                continue
            row: dict[str, Any] = {"op": op, "concurrency": concurrency}
            for name in variants:
                for key in ("rps", "cpu_us", "server_cpu_us"):
                    row[f"{name}_{key}"] = summary([r[name][key] for r in block_runs])
            row["sdk_raw_rps"] = summary([r["sdk"]["rps"] / r["raw"]["rps"] for r in block_runs])
            row["sdk_raw_cpu"] = summary(
                [r["sdk"]["cpu_us"] / r["raw"]["cpu_us"] for r in block_runs]
            )
            if "httpx" in variants:
                row["sdk_httpx_rps"] = summary(
                    [r["sdk"]["rps"] / r["httpx"]["rps"] for r in block_runs]
                )
                row["httpx_sdk_cpu"] = summary(
                    [r["httpx"]["cpu_us"] / r["sdk"]["cpu_us"] for r in block_runs]
                )
            rows.append(row)
    return rows


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    variants = result["variants"]
    out = [
        f"N = {result['requests']:,} requests per variant per block "
        f"({result['peer_requests']:,} for the httpx peer, whose per-request figures "
        "do not depend on N), "
        f"{result['repeat']} repetitions; median (min\u2013max). The SDK's JSON: "
        f"{result.get('json_backend', 'json')}.",
        "",
        "Requests/s and client CPU µs per request:",
        "",
    ]
    header = ["op", "conc."]
    for name in variants:
        header += [f"{LABELS[name]} req/s", "CPU µs/req"]
    rows = []
    for row in result["summary"]:
        cells = [row["op"], str(row["concurrency"])]
        for name in variants:
            cells += [fmt(row[f"{name}_rps"]), fmt(row[f"{name}_cpu_us"])]
        rows.append(cells)
    out.append(table(header, rows))
    out += ["", "Paired ratios (per repetition, same server):", ""]
    header = ["op", "conc.", "SDK/raw req/s", "SDK/raw CPU per req"]
    if "httpx" in variants:
        header += ["SDK/httpx req/s", "httpx/SDK CPU per req"]
    rows = []
    for row in result["summary"]:
        cells = [
            row["op"],
            str(row["concurrency"]),
            fmt(row["sdk_raw_rps"], 3),
            fmt(row["sdk_raw_cpu"], 3),
        ]
        if "httpx" in variants:
            cells += [fmt(row["sdk_httpx_rps"], 2), fmt(row["httpx_sdk_cpu"], 2)]
        rows.append(cells)
    out.append(table(header, rows))
    out += ["", "Server CPU µs per request (the simulator process), for scale:", ""]
    header = ["op", "conc.", *(LABELS[name] for name in variants)]
    rows = [
        [row["op"], str(row["concurrency"])]
        + [fmt(row[f"{name}_server_cpu_us"]) for name in variants]
        for row in result["summary"]
    ]
    out.append(table(header, rows))
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes."""
    parser.add_argument("--requests", type=int, default=5000, help="N per variant per block")
    parser.add_argument(
        "--peer-requests", type=int, default=1000, help="N for the (slow) httpx peer"
    )
    parser.add_argument("--concurrency", type=_ints, default=[16, 64, 256])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ops", type=_words, default=["get", "create"])
    parser.add_argument("--variants", type=_words, default=list(VARIANTS))


def smoke_args(args: argparse.Namespace) -> argparse.Namespace:
    """Shrink to one tiny run."""
    if args.smoke:
        args.requests, args.peer_requests, args.concurrency, args.repeat = 60, 30, [8], 1
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def _words(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _run(args: argparse.Namespace) -> dict[str, Any]:
    return run(smoke_args(args))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.throughput [--requests N] [--concurrency 16,64,256] ...`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, argv)


if __name__ == "__main__":
    raise SystemExit(main())
