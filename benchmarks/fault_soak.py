"""Fault soak: 1,000 creates with 20 % of POSTs faulted, plainly and against a hostile server.

Scenario "soak": each repetition runs the creates twice (rotated order), each
against a fresh standalone simulator (4 use cases): once with the `--fault` mix in
`FAULTS` (seeded by the repetition), once fault-free. Creates go through
`client.models.create` with `--concurrency` in flight and the local `POLICY` below.

Scenario "hostile": the same creates against a simulator that also limits every
API request to `--rate-limit` per second (a token bucket, burst = one second's
worth, answering 429 with `Retry-After`) and whose clock runs `--clock-offset`
seconds off (default 5 minutes behind: `created_at` and the `Date` header). The
fault mix is `HOSTILE_FAULTS`: `FAULTS` without its random `rate_limit` (the 429s
come from the real limit instead), its 3 % spread over drops and server errors
so that still 20 % of the POSTs the limit lets through are faulted. The client is
`HappyRobotClient(api_key, base_url)` with every option at its default (retry
policy, `max_concurrency` 64, no `rate_limit`): the point is that the defaults keep
the promises. `--hostile-concurrency` jobs are in flight (default 64, the default
`max_concurrency`). The request rate is the server's: API requests of every status
(429s included) arriving in the steady part, from `WARMUP` seconds after the first
request until the last job was started (from then on fewer jobs remain than are in
flight), by the simulator's request log (arrival times on the shared monotonic clock).

Counted by the simulator: models stored, duplicates (a (use case, name) stored
twice), requests by route and status, faults; by us: jobs that got no model back
(lost, with the error raised, e.g. `AmbiguousCreateError`), and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
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
    machine,
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
#: The hostile mix: `FAULTS` without `rate_limit`, its 3 % moved to drop, truncate and 502;
#: still 20 % of the POSTs that the server's rate limit lets through.
HOSTILE_FAULTS = (
    "commit_then_fail:0.03:then=drop",
    "commit_then_fail:0.02:then=500",
    "commit_then_fail:0.01:then=504",
    "drop:0.04:create",
    "truncate:0.04:create",
    "server_error:0.02:create:status=500",
    "server_error:0.02:create:status=502:html=true",
    "server_error:0.01:create:status=503",
    "server_error:0.01:create:status=504",
)
#: Delays sized for a server on this machine (the defaults are sized for the real API).
POLICY = hr.RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.2, reconcile_delay=0.05)
POLICY_TEXT = "RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.2, reconcile_delay=0.05)"
USE_CASES = 4
#: Hostile scenario: seconds after the first request before the rate is "steady".
WARMUP = 2.0
#: Hostile scenario: the target, the rate the server sees within this share of its limit.
RATE_TOLERANCE = 0.20
SCENARIOS = ("soak", "hostile")


def fault_args(faults: Sequence[str] = FAULTS) -> list[str]:
    """`--fault X` for every fault of the mix."""
    return [arg for fault in faults for arg in ("--fault", fault)]


def hostile_args(rate_limit: float, clock_offset: float) -> list[str]:
    """The hostile simulator's arguments."""
    return [
        "--use-cases",
        str(USE_CASES),
        "--rate-limit-rps",
        f"{rate_limit:g}",
        "--clock-offset",
        f"{clock_offset:g}",
        *fault_args(HOSTILE_FAULTS),
    ]


async def soak(
    sim: SimProcess,
    jobs: int,
    concurrency: int,
    prefix: str,
    client_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create `jobs` models; return what the client and the simulator saw.

    `client_options` are `HappyRobotClient` keyword arguments (default: the local
    `POLICY`, `max_concurrency=concurrency`); `{}` means every default.
    """
    if client_options is None:
        client_options = {"retry_policy": POLICY, "max_concurrency": concurrency}
    names = [f"{prefix}-{i:05d}" for i in range(jobs)]
    returned: dict[str, hr.Model] = {}
    errors: Counter[str] = Counter()
    backlog_empty = math.nan  # time.monotonic() when the last job was started

    async def create(index: int) -> None:
        nonlocal backlog_empty
        if index == jobs - 1:
            backlog_empty = time.monotonic()
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
            api_key=sim.api_key, base_url=sim.base_url, **client_options
        ) as client:
            started = time.perf_counter()
            await drive(create, range(jobs), concurrency)
            seconds = time.perf_counter() - started
            seen = _client_view(client)
        stats = await sim.stats(session)
    stored = {entry["name"]: entry["count"] for entry in stats["models_by_name"]}
    wrong = sum(1 for name, model in returned.items() if model.name != name)
    statuses: Counter[str] = Counter()
    for counts in stats["requests"].values():
        statuses.update(counts)
    return {
        "seconds": seconds,
        "jobs": jobs,
        "returned": len(returned),
        "lost": jobs - len(returned),
        "errors": dict(errors),
        "ambiguous": errors["AmbiguousCreateError"],
        "wrong_model": wrong,
        "models_created": stats["models_created"],
        "duplicates": stats["duplicates"],
        "not_stored": sum(1 for name in names if name not in stored),
        "requests": stats["total_requests"],
        "requests_by_route": {
            route: sum(counts.values()) for route, counts in stats["requests"].items()
        },
        "requests_by_status": dict(sorted(statuses.items())),
        "faults": stats["faults"],
        "extra_requests_per_job": (stats["total_requests"] - jobs) / jobs,
        **seen,
        **_rates(stats, backlog_empty),
    }


def _client_view(client: hr.HappyRobotClient) -> dict[str, Any]:
    """What the client ended up believing (private attributes: diagnostics only)."""
    transport = getattr(client, "_transport", None)
    limiter = getattr(transport, "rate_limiter", None)
    clock = getattr(transport, "server_clock", None)
    return {
        "limiter_rate": getattr(limiter, "rate", None),
        "limiter_max_rate": getattr(limiter, "max_rate", None),
        "clock_offset_estimate": getattr(clock, "offset", None),
    }


def _rates(stats: dict[str, Any], backlog_empty: float) -> dict[str, Any]:
    """Requests per second the server saw, second by second and in the steady window."""
    log = stats["log"]
    if not log:
        return {}
    first = min(entry["time"] for entry in log)
    last = max(entry["time"] for entry in log)
    per_second = [0] * (int(last - first) + 1)
    throttled = [0] * len(per_second)
    for entry in log:
        second = int(entry["time"] - first)
        per_second[second] += 1
        throttled[second] += entry["status"] == "429"
    start, end = first + WARMUP, backlog_empty
    out: dict[str, Any] = {
        "log_complete": len(log) == stats["total_requests"],
        "per_second": per_second,
        "per_second_429": throttled,
        "throttled_share_all": sum(throttled) / len(log),
        "window": None,
    }
    if not end - start >= 1.0:  # too short to call steady (or nan)
        return out
    window = [entry for entry in log if start <= entry["time"] < end]
    refused = sum(1 for entry in window if entry["status"] == "429")
    length = end - start
    out.update(
        window=[WARMUP, end - first],
        rate_seen=len(window) / length,
        rate_accepted=(len(window) - refused) / length,
        throttled_share=refused / len(window) if window else 0.0,
    )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The scenarios asked for, `repeat` times each."""
    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    logger = logging.getLogger("happyrobot_async")
    logger.addHandler(logging.NullHandler())  # the retries' warnings are expected here
    propagate, logger.propagate = logger.propagate, False
    facts = machine()
    out: dict[str, Any] = {
        "benchmark": "fault_soak",
        "scenarios": scenarios,
        "sdk": {"commit": facts["commit"], "dirty": facts["dirty"]},
    }
    try:
        if "soak" in scenarios:
            started = time.perf_counter()
            out.update(run_soak(args))
            out["soak_wall_seconds"] = time.perf_counter() - started
        if "hostile" in scenarios:
            started = time.perf_counter()
            out["hostile"] = run_hostile(args)
            out["hostile"]["wall_seconds"] = time.perf_counter() - started
    finally:
        logger.propagate = propagate
    return out


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    """Faulted and fault-free soaks, interleaved, `repeat` times."""
    runs = []
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
            f"soak rep {rep}: {faulted['models_created']} models, {faulted['duplicates']} dup, "
            f"{faulted['lost']} lost, {sum(faulted['faults'].values())} faults, "
            f"{faulted['seconds']:.2f} s vs {clean['seconds']:.2f} s clean",
            flush=True,
        )
        runs.append(result)
    keys = ("models_created", "duplicates", "lost", "not_stored", "wrong_model")
    return {
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


def run_hostile(args: argparse.Namespace) -> dict[str, Any]:
    """The hostile soak, `repeat` times, each against a fresh simulator seeded by the rep."""
    sim_args = hostile_args(args.rate_limit, args.clock_offset)
    runs = []
    for rep in range(args.repeat):
        with simulator(*sim_args, seed=rep) as sim:
            result = asyncio.run(
                soak(sim, args.jobs, args.hostile_concurrency, f"hostile-{rep}", {})
            )
        result["rep"] = rep
        rate = result.get("rate_seen")
        print(
            f"hostile rep {rep}: {result['models_created']} models, {result['duplicates']} dup, "
            f"{result['lost']} lost {result['errors']}, "
            + (f"{rate:.1f} req/s steady, " if rate is not None else "")
            + f"429s {result['requests_by_status'].get('429', 0)}, {result['seconds']:.1f} s",
            flush=True,
        )
        runs.append(result)
    keys = ("models_created", "duplicates", "lost", "ambiguous", "not_stored", "wrong_model")
    steady = [r for r in runs if r.get("rate_seen") is not None]
    statuses: Counter[str] = Counter()
    for r in runs:
        statuses.update(r["requests_by_status"])
    out: dict[str, Any] = {
        "jobs": args.jobs,
        "concurrency": args.hostile_concurrency,
        "repeat": args.repeat,
        "rate_limit": args.rate_limit,
        "clock_offset": args.clock_offset,
        "warmup": WARMUP,
        "tolerance": RATE_TOLERANCE,
        "client": "HappyRobotClient(api_key, base_url): every option at its default",
        "faults": list(HOSTILE_FAULTS),
        "simulator": display_command(simulate_command(*sim_args, seed=0)),
        "runs": runs,
        "totals": {key: sum(r[key] for r in runs) for key in keys},
        "requests_by_status": dict(sorted(statuses.items())),
        "models_per_run": summary([r["models_created"] for r in runs]),
        "requests": summary([r["requests"] for r in runs]),
        "extra_requests_per_job": summary([r["extra_requests_per_job"] for r in runs]),
        "throttled_share_all": summary([r["throttled_share_all"] for r in runs]),
        "seconds": summary([r["seconds"] for r in runs]),
        "log_complete": all(r.get("log_complete", False) for r in runs),
    }
    if steady:
        out.update(
            rate_seen=summary([r["rate_seen"] for r in steady]),
            rate_accepted=summary([r["rate_accepted"] for r in steady]),
            rate_ratio=summary([r["rate_seen"] / args.rate_limit for r in steady]),
            throttled_share=summary([r["throttled_share"] for r in steady]),
            window_seconds=summary([r["window"][1] - r["window"][0] for r in steady]),
        )
    return out


def hostile_verdicts(hostile: dict[str, Any]) -> tuple[bool, bool | None]:
    """(every job one model, none lost; the median steady rate within the tolerance or None)."""
    t = hostile["totals"]
    jobs_ok = (
        t["duplicates"] == 0
        and t["lost"] == 0
        and t["not_stored"] == 0
        and t["models_created"] == hostile["jobs"] * hostile["repeat"]
    )
    ratio = hostile.get("rate_ratio")
    rate_ok = None if ratio is None else abs(ratio["median"] - 1) <= hostile["tolerance"]
    return jobs_ok, rate_ok


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    parts = []
    if "sdk" in result:
        sdk = result["sdk"]
        dirty = " (with uncommitted changes)" if sdk["dirty"] else ""
        parts.append(f"Measured with the SDK at commit {sdk['commit']}{dirty}.")
    if "totals" in result:
        parts.append(render_soak(result))
    if "hostile" in result:
        parts.append(render_hostile(result["hostile"]))
    return "\n\n".join(parts)


def render_soak(result: dict[str, Any]) -> str:
    """The plain soak: faulted vs fault-free."""
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
            "### Soak: 20 % faults, local retry delays",
            "",
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
            "",
            f"Simulator (faulted): `{result['simulator']}` (port, seed vary)."
            + (
                f" Wall time of this scenario: {result['soak_wall_seconds']:.0f} s."
                if "soak_wall_seconds" in result
                else ""
            ),
        ]
    )


def render_hostile(h: dict[str, Any]) -> str:
    """The hostile soak: faults, a server rate limit and a skewed server clock."""
    t, limit = h["totals"], h["rate_limit"]
    faults: Counter[str] = Counter()
    routes: Counter[str] = Counter()
    for r in h["runs"]:
        faults.update(r["faults"])
        routes.update(r["requests_by_route"])
    jobs_ok, rate_ok = hostile_verdicts(h)
    rows = [
        ["models stored (all runs)", f"{t['models_created']:,} of {h['jobs'] * h['repeat']:,}"],
        ["duplicates", str(t["duplicates"])],
        ["lost (no model returned)", str(t["lost"])],
        ["of which AmbiguousCreateError", str(t["ambiguous"])],
        ["jobs never stored", str(t["not_stored"])],
        ["wrong model returned", str(t["wrong_model"])],
        ["requests per run", fmt(h["requests"])],
        ["extra requests per job", fmt(h["extra_requests_per_job"], 3)],
        ["429 share, whole run", fmt(h["throttled_share_all"], 3)],
        ["wall time, s", fmt(h["seconds"], 1)],
    ]
    if "rate_seen" in h:
        rows[7:7] = [
            [
                f"requests/s the server saw, steady (limit {limit:g})",
                f"**{fmt(h['rate_seen'], 1)}**",
            ],
            ["of which accepted (not 429), req/s", fmt(h["rate_accepted"], 1)],
            ["seen / limit", fmt(h["rate_ratio"], 3)],
            ["429 share, steady", fmt(h["throttled_share"], 3)],
            ["steady window, s", fmt(h["window_seconds"], 1)],
        ]
    fired = ", ".join(f"{kind} {count:,}" for kind, count in sorted(faults.items()))
    by_route = ", ".join(f"{route} {count:,}" for route, count in sorted(routes.items()))
    statuses = h["requests_by_status"].items()
    by_status = ", ".join(f"{status} {count:,}" for status, count in statuses)
    offsets = [r["clock_offset_estimate"] for r in h["runs"] if r["clock_offset_estimate"]]
    limiter = [r["limiter_rate"] for r in h["runs"] if r["limiter_rate"]]
    notes = []
    if offsets:
        notes.append(
            f"the client's estimate of the server clock offset at the end: "
            f"{min(offsets):+.1f} to {max(offsets):+.1f} s (true: {h['clock_offset']:+g} s)"
        )
    if limiter:
        notes.append(
            f"its limiter's rate at the end: {min(limiter):.1f}\u2013{max(limiter):.1f} req/s"
        )
    ceilings = [r["limiter_max_rate"] for r in h["runs"] if r.get("limiter_max_rate")]
    if ceilings:
        notes.append(
            f"its limiter's ceiling (the requests it counted in the second before the first "
            f"429; the server's bucket lets one second's worth through at once): "
            f"{min(ceilings):.0f}\u2013{max(ceilings):.0f}"
        )
    cut = (
        ""
        if h["log_complete"]
        else " The simulator's request log was cut short: the rates cover its last 10,000 requests."
    )
    rate_text = (
        "not measured (run too short for a steady window)"
        if rate_ok is None
        else f"{_met(rate_ok)} ({fmt(h['rate_ratio'], 3)} of the limit)"
    )
    return "\n".join(
        [
            f"### Hostile: 20 % faults + a {limit:g} req/s server limit + a server clock "
            f"{h['clock_offset']:+g} s off",
            "",
            f"{h['jobs']:,} creates per run, {h['concurrency']} in flight, {h['repeat']} "
            "repetitions (counts: totals over all of them; rates and times: median "
            "(min\u2013max)). Client: `HappyRobotClient(api_key, base_url)`, every option at "
            "its default. Steady part: from "
            f"{h['warmup']:g} s after the first request until the last job started.",
            "",
            table(["", "hostile"], rows),
            "",
            f"Every job exactly one model, none lost: {_met(jobs_ok)}. Request rate within "
            f"{h['tolerance']:.0%} of the limit: {rate_text}.",
            "",
            f"All runs, requests by status: {by_status}; by route: {by_route}; faults by kind: "
            f"{fired} (`server_rate_limit` is the limit's 429s)."
            + (f" Diagnostics: {'; '.join(notes)}." if notes else "")
            + cut,
            "",
            f"Simulator: `{h['simulator']}` (port, seed vary). Wall time of this scenario: "
            f"{h['wall_seconds']:.0f} s. Rerun it alone (prints the section, keeps no JSON): "
            "`python -m benchmarks.fault_soak --scenarios hostile`; rerun both scenarios into "
            "the results: `python -m benchmarks.fault_soak --json "
            "benchmarks/results/fault_soak.json && python benchmarks/run.py --render-only`.",
        ]
    )


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes and the hostile server's settings."""
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="soak: jobs in flight")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated: soak, hostile"
    )
    parser.add_argument("--rate-limit", type=float, default=100.0, help="hostile: req/s")
    parser.add_argument("--clock-offset", type=float, default=-300.0, help="hostile: seconds")
    parser.add_argument("--hostile-concurrency", type=int, default=64, help="hostile: in flight")


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        args.jobs, args.repeat = 100, 1
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.fault_soak [--jobs N] [--repeat R] [--scenarios soak,hostile] ...`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, argv)


if __name__ == "__main__":
    raise SystemExit(main())
