"""Throughput with `[speedups]`: the SDK on orjson vs the same raw aiohttp + `json.loads` floor.

The measurement of section 1 (its blocks, chunks, rotation and figures), for
the raw floor and the SDK only, with the optional extra installed
(`pip install 'happyrobot-async[speedups]'`: orjson for the wire's JSON).
Section 1 runs with `HAPPYROBOT_NO_SPEEDUPS=1`, so it measures the core alone;
`run.py` runs this one without it. Target (issue 13, target 2): the SDK at
least as fast as the floor, SDK/raw req/s ≥ 1.0, at every concurrency.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from happyrobot_async import _json

from . import throughput
from ._common import main_for

render = throughput.render
add_arguments = throughput.add_arguments


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if _json.BACKEND != "orjson":
        raise SystemExit(
            "benchmarks.speedups needs the [speedups] extra (orjson) and no "
            "HAPPYROBOT_NO_SPEEDUPS in the environment"
        )
    args.variants = ["raw", "sdk"]
    return throughput._run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.speedups [the options of benchmarks.throughput]`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, argv)


if __name__ == "__main__":
    raise SystemExit(main())
