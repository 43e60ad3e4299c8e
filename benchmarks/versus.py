"""Versus: this checkout's SDK against the SDK at another commit, and the raw floor, in one run.

For "did this change make requests slower?": both SDKs run in one process,
against one standalone simulator, taking turns with raw aiohttp + `json.loads`
in a rotated order, so machine noise hits all three alike. The other commit's
package is exported with `git archive` and imported under another name (its
modules import each other relatively, so it runs as it was). Figures: client
CPU µs per request (`time.process_time()`) and each one's ratio to raw, medians.

    python -m benchmarks.versus 0c0fd70 --op create --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import happyrobot_async as hr

from ._common import ROOT, SimProcess, simulator
from .throughput import RawAiohttp, create_bodies, drive

PACKAGE = "happyrobot_async"


def import_at(rev: str, into: Path) -> Any:
    """The SDK package as it was at git revision `rev`, imported as `sdk_<rev>`."""
    archive = subprocess.run(
        ["git", "archive", rev, PACKAGE], cwd=ROOT, capture_output=True, check=True
    ).stdout
    name = f"sdk_{rev.replace('-', '_').replace('~', '_').replace('^', '_')}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / PACKAGE).rename(into / name)
    sys.path.insert(0, str(into))
    return importlib.import_module(name)


class Sdk:
    """One SDK module's client, calling `models.get` or `models.create`."""

    def __init__(self, module: Any, sim: SimProcess, concurrency: int) -> None:
        self.client = module.HappyRobotClient(
            api_key=sim.api_key, base_url=sim.base_url, max_concurrency=concurrency
        )

    async def get(self, model_id: str) -> Any:
        return await self.client.models.get(model_id)

    async def create(self, body: dict[str, Any]) -> Any:
        return await self.client.models.create(**body)

    async def aclose(self) -> None:
        await self.client.close()


async def compare(sim: SimProcess, other: Any, args: argparse.Namespace) -> dict[str, float]:
    """Median client CPU µs per request of raw, the other SDK and this one."""
    variants = {
        "raw": RawAiohttp(sim, args.concurrency),
        "other": Sdk(other, sim, args.concurrency),
        "this": Sdk(hr, sim, args.concurrency),
    }
    seed = await variants["this"].create(create_bodies(sim, "seed", 1)[0])
    turn = 0

    def inputs(n: int) -> list[Any]:
        nonlocal turn
        turn += 1
        return [seed.id] * n if args.op == "get" else create_bodies(sim, f"t{turn}", n)

    for variant in variants.values():
        await drive(getattr(variant, args.op), inputs(2 * args.concurrency), args.concurrency)
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.repeat):
        for name in names[rep % 3 :] + names[: rep % 3]:
            batch = inputs(args.requests)
            started = time.process_time()
            await drive(getattr(variants[name], args.op), batch, args.concurrency)
            cpu[name].append((time.process_time() - started) / args.requests * 1e6)
    for variant in variants.values():
        await variant.aclose()
    return {name: statistics.median(values) for name, values in cpu.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Print raw, the other commit's and this checkout's CPU per request, and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the git revision to compare with (e.g. a tag or a hash)")
    parser.add_argument("--op", choices=("get", "create"), default="get")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3000, help="per turn")
    parser.add_argument("--repeat", type=int, default=8, help="turns of each")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, simulator("--use-cases", "3") as sim:
        other = import_at(args.rev, Path(tmp))
        cpu = asyncio.run(compare(sim, other, args))
    floor = cpu["raw"]
    print(
        f"{args.op} c={args.concurrency}, client CPU µs per request (x raw): "
        f"raw {floor:.1f}, {args.rev} {cpu['other']:.1f} ({cpu['other'] / floor:.3f}), "
        f"this checkout {cpu['this']:.1f} ({cpu['this'] / floor:.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
