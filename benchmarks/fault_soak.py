"""Fault soak: 1,000 creates with 20 % of POSTs faulted vs the same creates fault-free.

Each repetition runs both (rotated order), each against a fresh standalone
simulator (4 use cases; the faulted one with the `--fault` mix in `FAULTS`, seeded
by the repetition). Creates go through `client.models.create` with `CONCURRENCY`
in flight and the local `POLICY` below. Counted by the simulator: models stored,
duplicates (a (use case, name) stored twice), requests by route; by us: jobs that
got no model back (lost), and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp

import happyrobot_async as hr

from ._common import (
    SimProcess,
    display_command,
    fmt,
    main_for,
    rotated,
    simulate_command,
    simulator,
    summary,
    table,
)
from .throughput import drive

#: 20 % of POSTs in all: what each fault does to a create is in the simulator's docs.
FAULTS = (
    "commit_then_fail:0.03:then=drop",
    "commit_then_fail:0.02:then=500",
    "commit_then_fail:0.01:then=504",
    "drop:0.03:create",
    "truncate:0.03:create",
    "server_error:0.02:create:status=500",
    "server_error:0.01:create:status=502:html=true",
    "server_error:0.01:create:status=503",
    "server_error:0.01:create:status=504",
    "rate_limit:0.03:create:retry_after=0.05",
)
#: Delays sized for a server on this machine (the defaults are sized for the real API).
POLICY = hr.RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.2, reconcile_delay=0.05)
POLICY_TEXT = "RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.2, reconcile_delay=0.05)"
USE_CASES = 4


def fault_args() -> list[str]:
    """`--fault X` for every fault of the mix."""
    return [arg for fault in FAULTS for arg in ("--fault", fault)]


async def soak(sim: SimProcess, jobs: int, concurrency: int, prefix: str) -> dict[str, Any]:
    """Create `jobs` models; return what the client and the simulator saw."""
    names = [f"{prefix}-{i:05d}" for i in range(jobs)]
    returned: dict[str, hr.Model] = {}
    errors: Counter[str] = Counter()

    async def create(index: int) -> None:
        name = names[index]
        use_case_id = sim.use_case_ids[index % len(sim.use_case_ids)]
        try:
            model = await client.models.create(
                use_case_id=use_case_id,
                name=name,
                from_model_id=sim.base_model_of(use_case_id),
                train_sample_ids=[f"{name}-train-1", f"{name}-train-2"],
                test_sample_ids=[f"{name}-test"],
            )
        except hr.HappyRobotError as exc:
            errors[type(exc).__name__] += 1
        else:
            returned[name] = model

    async with aiohttp.ClientSession() as session:
        await sim.reset(session)
        async with hr.HappyRobotClient(
            api_key=sim.api_key,
            base_url=sim.base_url,
            retry_policy=POLICY,
            max_concurrency=concurrency,
        ) as client:
            started = time.perf_counter()
            await drive(create, range(jobs), concurrency)
            seconds = time.perf_counter() - started
        stats = await sim.stats(session)
    stored = {entry["name"]: entry["count"] for entry in stats["models_by_name"]}
    wrong = sum(1 for name, model in returned.items() if model.name != name)
    return {
        "seconds": seconds,
        "jobs": jobs,
        "returned": len(returned),
        "lost": jobs - len(returned),
        "errors": dict(errors),
        "wrong_model": wrong,
        "models_created": stats["models_created"],
        "duplicates": stats["duplicates"],
        "not_stored": sum(1 for name in names if name not in stored),
        "requests": stats["total_requests"],
        "requests_by_route": {
            route: sum(counts.values()) for route, counts in stats["requests"].items()
        },
        "faults": stats["faults"],
        "extra_requests_per_job": (stats["total_requests"] - jobs) / jobs,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Faulted and fault-free soaks, interleaved, `repeat` times."""
    logger = logging.getLogger("happyrobot_async")
    logger.addHandler(logging.NullHandler())  # the retries' warnings are expected here
    propagate, logger.propagate = logger.propagate, False
    runs = []
    try:
        for rep in range(args.repeat):
            result: dict[str, Any] = {"rep": rep}
            for mode in rotated(["clean", "faulted"], rep):
                sim_args = ["--use-cases", str(USE_CASES)]
                if mode == "faulted":
                    sim_args += fault_args()
                with simulator(*sim_args, seed=rep) as sim:
                    result[mode] = asyncio.run(
                        soak(sim, args.jobs, args.concurrency, f"soak-{mode}-{rep}")
                    )
            faulted, clean = result["faulted"], result["clean"]
            print(
                f"rep {rep}: {faulted['models_created']} models, {faulted['duplicates']} dup, "
                f"{faulted['lost']} lost, {sum(faulted['faults'].values())} faults, "
                f"{faulted['seconds']:.2f} s vs {clean['seconds']:.2f} s clean",
                flush=True,
            )
            runs.append(result)
    finally:
        logger.propagate = propagate
    keys = ("models_created", "duplicates", "lost", "not_stored", "wrong_model")
    out: dict[str, Any] = {
        "benchmark": "fault_soak",
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "policy": POLICY_TEXT,
        "faults": list(FAULTS),
        "simulator": display_command(
            simulate_command("--use-cases", str(USE_CASES), *fault_args(), seed=0)
        ),
        "runs": runs,
        "totals": {key: sum(r["faulted"][key] for r in runs) for key in keys},
        "clean_totals": {key: sum(r["clean"][key] for r in runs) for key in keys},
        "faults_fired": summary([sum(r["faulted"]["faults"].values()) for r in runs]),
        "fault_share": summary(
            [
                sum(r["faulted"]["faults"].values()) / r["faulted"]["requests_by_route"]["create"]
                for r in runs
            ]
        ),
        "extra_requests_per_job": summary([r["faulted"]["extra_requests_per_job"] for r in runs]),
        "clean_extra_requests_per_job": summary(
            [r["clean"]["extra_requests_per_job"] for r in runs]
        ),
        "seconds": summary([r["faulted"]["seconds"] for r in runs]),
        "clean_seconds": summary([r["clean"]["seconds"] for r in runs]),
        "time_ratio": summary([r["faulted"]["seconds"] / r["clean"]["seconds"] for r in runs]),
    }
    return out


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    totals, clean = result["totals"], result["clean_totals"]
    repeat, jobs = result["repeat"], result["jobs"]
    faults: Counter[str] = Counter()
    routes: Counter[str] = Counter()
    for r in result["runs"]:
        faults.update(r["faulted"]["faults"])
        routes.update(r["faulted"]["requests_by_route"])
    rows = [
        ["models stored", f"{totals['models_created']:,}", f"{clean['models_created']:,}"],
        ["duplicates", str(totals["duplicates"]), str(clean["duplicates"])],
        ["lost (no model returned)", str(totals["lost"]), str(clean["lost"])],
        ["jobs never stored", str(totals["not_stored"]), str(clean["not_stored"])],
        ["wrong model returned", str(totals["wrong_model"]), str(clean["wrong_model"])],
        [
            "extra requests per job",
            fmt(result["extra_requests_per_job"], 3),
            fmt(result["clean_extra_requests_per_job"], 3),
        ],
        ["wall time, s", fmt(result["seconds"], 2), fmt(result["clean_seconds"], 2)],
    ]
    fired = ", ".join(f"{kind} {count}" for kind, count in sorted(faults.items()))
    by_route = ", ".join(f"{route} {count:,}" for route, count in sorted(routes.items()))
    return "\n".join(
        [
            f"{jobs:,} creates per run, {result['concurrency']} in flight, "
            f"{repeat} repetitions (totals over all of them; times: median (min\u2013max)).",
            f"Retry policy: `{result['policy']}`.",
            "",
            table(["", "20 % faulted", "fault-free"], rows),
            "",
            f"Time faulted / fault-free: **{fmt(result['time_ratio'], 2)}**. "
            f"Faults fired per run: {fmt(result['faults_fired'])} "
            f"({fmt(result['fault_share'], 3)} of POSTs). "
            f"All runs, faults by kind: {fired}. Requests by route (faulted runs): {by_route}.",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes."""
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        args.jobs, args.repeat = 100, 1
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.fault_soak [--jobs N] [--concurrency C] [--repeat R]`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, argv)


if __name__ == "__main__":
    raise SystemExit(main())
