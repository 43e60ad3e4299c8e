"""Run every benchmark and regenerate benchmarks/RESULTS.md: `python benchmarks/run.py`.

Each benchmark runs in its own process (`python -m benchmarks.<name> --json ...`);
this script collects their JSON (kept in benchmarks/results/), adds the machine's
facts, the targets and a reading of the figures, and writes RESULTS.md. `--smoke`
runs each once at a tiny size (and writes RESULTS.md only with `--out`); `--only
a,b` runs a subset; `--render-only` rewrites RESULTS.md from the kept JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    bulk,
    fault_soak,
    floor,
    profiling,
    speedups,
    structuring,
    throughput,
    watcher_scale,
)
from benchmarks._common import ROOT, fmt, machine

BENCHMARKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "throughput": throughput.render,
    "speedups": speedups.render,
    "floor": floor.render,
    "watcher_scale": watcher_scale.render,
    "fault_soak": fault_soak.render,
    "structuring": structuring.render,
    "profiling": profiling.render,
    "bulk": bulk.render,
}
TITLES = {
    "throughput": "1. Throughput",
    "speedups": "1b. Throughput with `[speedups]`",
    "floor": "1c. Floor: aiohttp's share and the SDK's",
    "watcher_scale": "2. Watcher scale",
    "fault_soak": "3. Fault soak",
    "structuring": "4. Structuring",
    "profiling": "5. Profile",
    "bulk": "6. Bulk",
}


#: Environment each benchmark runs with: sections 1 and 1c measure the core, without the extra.
ENVIRONMENTS = {name: {"HAPPYROBOT_NO_SPEEDUPS": "1"} for name in ("throughput", "floor")}
#: Throughput targets (issue 13): SDK/raw req/s and client CPU per request, every concurrency.
RPS_TARGET, CPU_TARGET, SPEEDUPS_RPS_TARGET = 0.95, floor.CPU_TARGET, 1.0


def run_one(name: str, extra: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Run `python -m benchmarks.<name> EXTRA --json TMP`; return its results and command."""
    env = ENVIRONMENTS.get(name, {})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        command = [sys.executable, "-m", f"benchmarks.{name}", *extra]
        shown = [*(f"{k}={v}" for k, v in env.items()), "python", *command[1:]]
        print(f"== {' '.join(shown)}", flush=True)
        environment = {**os.environ, **env}
        if name not in ENVIRONMENTS:
            environment.pop("HAPPYROBOT_NO_SPEEDUPS", None)
        subprocess.run([*command, "--json", str(out)], cwd=ROOT, check=True, env=environment)
        result: dict[str, Any] = json.loads(out.read_text())
    return result, shown


def verdicts(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each target against its figure: met or missed, and by how much."""
    lines = []
    tp = results.get("throughput")
    if tp:
        for row in tp["summary"]:
            rps, cpu = row["sdk_raw_rps"], row["sdk_raw_cpu"]
            lines.append(
                f"- {row['op']} at concurrency {row['concurrency']}: SDK/raw req/s "
                f"{fmt(rps, 3)} (target ≥ {RPS_TARGET}: {_met(rps['median'] >= RPS_TARGET)}); "
                f"SDK/raw client CPU per request {fmt(cpu, 3)} (target ≤ {CPU_TARGET}: "
                f"{_met(cpu['median'] <= CPU_TARGET)})"
                + (
                    f"; SDK/httpx req/s {fmt(row['sdk_httpx_rps'], 1)}"
                    if "sdk_httpx_rps" in row
                    else ""
                )
            )
    sp = results.get("speedups")
    if sp:
        for row in sp["summary"]:
            rps = row["sdk_raw_rps"]
            lines.append(
                f"- with `[speedups]`, {row['op']} at concurrency {row['concurrency']}: SDK/raw "
                f"req/s {fmt(rps, 3)} (target ≥ {SPEEDUPS_RPS_TARGET}: "
                f"{_met(rps['median'] >= SPEEDUPS_RPS_TARGET)}); client CPU per request "
                f"{fmt(row['sdk_raw_cpu'], 3)} of raw's"
            )
    ws = results.get("watcher_scale")
    if ws:
        w, s = ws["summary"]["watcher"], ws["settings"]
        lines += [
            f"- watcher, {figure}: {measured} (target {target}: {_met(ok)})"
            for figure, measured, target, ok in watcher_scale.verdicts(ws)
        ]
        lines.append(
            f"- watcher CPU per cycle at {w['models']:,} models {fmt(w['cpu_ms_per_cycle'])} ms "
            f"vs a {s['interval']:g} s interval ({fmt(w['cpu_share'], 3)} of one core)"
        )
    fs = results.get("fault_soak")
    if fs and "totals" in fs:
        t = fs["totals"]
        ok = t["duplicates"] == 0 and t["lost"] == 0
        lines.append(
            f"- fault soak, {fs['repeat']} \u00d7 {fs['jobs']:,} jobs: "
            f"{t['models_created']:,} models, "
            f"{t['duplicates']} duplicates, {t['lost']} lost (target 0 and 0: {_met(ok)})"
        )
    hostile = fs.get("hostile") if fs else None
    if hostile:
        t, limit = hostile["totals"], hostile["rate_limit"]
        jobs_ok, rate_ok = fault_soak.hostile_verdicts(hostile)
        lines.append(
            f"- hostile soak (20 % faults + a {limit:g} req/s server limit + a server clock "
            f"{hostile['clock_offset']:+g} s off, default client options), "
            f"{hostile['repeat']} \u00d7 {hostile['jobs']:,} jobs: models per run "
            f"{fmt(hostile['models_per_run'])}, {t['duplicates']} duplicates, {t['lost']} lost "
            f"(target {hostile['jobs']:,} models, 0 duplicates, 0 lost: {_met(jobs_ok)})"
        )
        if rate_ok is None:
            lines.append("- hostile soak request rate: not measured (no steady window)")
        else:
            lines.append(
                f"- hostile soak request rate the server saw, steady part: "
                f"{fmt(hostile['rate_seen'], 1)} req/s = {fmt(hostile['rate_ratio'], 3)} of the "
                f"{limit:g} req/s limit (target within {hostile['tolerance']:.0%}: "
                f"{_met(rate_ok)}); 429 share {fmt(hostile['throttled_share'], 3)} steady, "
                f"{fmt(hostile['throttled_share_all'], 3)} over the whole run"
            )
    bk = results.get("bulk")
    if bk:
        checks = "; ".join(
            f"run_batch/raw {figure} {fmt(stat, 3)} (target ≤ {target:.2f}: {_met(ok)})"
            for figure, stat, target, ok in bulk.verdicts(bk)
        )
        lines.append(
            f"- bulk, a {bk['settings']['jobs']:,}-job `run_batch` with a journal vs raw "
            f"aiohttp with one polling task per job: {checks}"
        )
    return lines


def reading(results: dict[str, dict[str, Any]]) -> list[str]:
    """A few sentences on what the figures say, computed from them."""
    lines = []
    tp = results.get("throughput")
    if tp:
        rows = {(r["op"], r["concurrency"]): r for r in tp["summary"]}
        for op in ("get", "create"):
            row = rows.get((op, 64))
            if row is None:
                continue
            sdk, raw = row["sdk_cpu_us"]["median"], row["raw_cpu_us"]["median"]
            server = row["sdk_server_cpu_us"]["median"]
            lines.append(
                f"- Throughput, {op} at concurrency 64: the SDK spends {sdk - raw:.0f} µs more "
                f"client CPU per request than raw aiohttp ({sdk:.0f} vs {raw:.0f} µs) while the "
                f"simulator spends about {server:.0f} µs per request; with two cores shared by "
                "client and server, neither side idles, so the req/s ratio tracks the CPU ratio."
            )
        row = rows.get(("get", 64))
        if "httpx" in tp["variants"] and row is not None:
            st = results.get("structuring")
            full = st["summary"][0] if st and "pydantic" in st["variants"] else None
            lines.append(
                f"- The httpx + pydantic peer spends "
                f"{row['httpx_sdk_cpu']['median']:.0f}x the SDK's client CPU per get at "
                "concurrency 64: the cost is in httpx/httpcore's request and pool "
                "machinery, not in pydantic"
                + (
                    f" (see Structuring: pydantic structures a full model in "
                    f"{full['pydantic']['median']:.1f} µs, our converter in "
                    f"{full['ours']['median']:.1f} µs)."
                    if full
                    else "."
                )
            )
    fl = results.get("floor")
    for row in fl["summary"] if fl else []:
        raw, bare = row["raw"]["median"], row["bare"]["median"]
        lines.append(
            f"- Floor, {row['op']} at concurrency {row['concurrency']}: raw aiohttp spends "
            f"{raw:.0f} µs of client CPU per request, a bare HTTP/1.1 exchange on asyncio "
            f"{bare:.0f}. Paired, at the loads they make: aiohttp's client machinery is "
            f"{row['machinery']['median']:.0f} µs with the SDK's session settings, its default "
            f"total timeout {row['defaults']['median']:.0f} more; the SDK's own work is "
            f"{row['sdk_work']['median']:.0f} µs over aiohttp with its settings, where target 1 "
            f"(≤ {floor.CPU_TARGET}x raw) would leave it {row['budget']['median']:.0f}."
        )
    pr = results.get("profiling")
    if pr:
        shares = {op: dict(pr["profiles"][op]["groups"]) for op in ("get", "create")}
        decode = pr["decode"]
        lines.append(
            "- Profile (concurrency 64): the SDK's own code is "
            + " and ".join(
                f"{shares[op].get('happyrobot_async', 0.0):.0%} of the client's busy time "
                f"for {op} (aiohttp {shares[op].get('aiohttp', 0.0):.0%})"
                for op in shares
            )
            + f". The poll loop decodes a list item in {decode['ours']['median']:.2f} µs, "
            f"{decode['ratio']['median']:.1f}x `json.loads` alone."
        )
    ws = results.get("watcher_scale")
    if ws:
        w, s = ws["summary"]["watcher"], ws["settings"]
        lines.append(
            f"- Watcher: one list per use case per cycle, as designed; a cycle lasts "
            f"{w['cycle_seconds']['median']:.2f} s at a {s['interval']:g} s interval (intervals "
            "run from when a poll is planned, and a use case's models share one unjittered list), "
            f"so the watcher makes {w['requests_per_interval']['median']:.1f} requests per "
            f"{s['interval']:g} s "
            f"interval. CPU per cycle: {w['cpu_ms_per_cycle']['median']:.0f} ms for "
            f"{w['models']:,} models ({w['cpu_us_per_model_cycle']['median']:.1f} µs per model; "
            "its window sees every model change status once, and only changed list items are "
            "structured), against "
            f"{ws['summary']['naive']['cpu_us_per_model_cycle']['median']:.0f} µs per model "
            "for one task per model."
            + (
                f" At {large['models']:,} models in {s['large_use_cases']} use cases, with "
                f"nothing changing: {large['cpu_us_per_model_cycle']['median']:.2f} µs per "
                f"model per cycle and {large['rss_kb_per_model']['median']:.2f} KB per model."
                if (large := ws["summary"].get("large"))
                else ""
            )
        )
    fs = results.get("fault_soak")
    if fs and "totals" in fs:
        t = fs["totals"]
        exact = t["duplicates"] == 0 and t["lost"] == 0 and t["not_stored"] == 0
        faulted, clean = fs["seconds"]["median"], fs["clean_seconds"]["median"]
        paced = [
            r["faulted"]["limiter_rate"]
            for r in fs["runs"]
            if r["faulted"].get("limiter_rate") is not None
        ]
        lines.append(
            "- Fault soak: "
            + (
                "every job got exactly one model"
                if exact
                else f"{t['duplicates']} duplicates and {t['lost']} jobs lost"
            )
            + f"; the faults cost {fs['extra_requests_per_job']['median']:.2f} extra requests "
            f"per job (resends, reconciling lists and gets) and {fs['time_ratio']['median']:.1f}x "
            f"the fault-free wall time ({faulted:.2f} s vs {clean:.2f} s)"
            + (
                f". In {len(paced)} of {len(fs['runs'])} faulted runs the mix's random 429s "
                "(the `rate_limit` fault, 3 % of POSTs, no overload behind them) engaged the "
                "client's adaptive rate limiter, each further one halving its rate; it ended "
                f"pacing at {min(paced):.1f}\u2013{max(paced):.1f} req/s, so the pacing, not "
                "the retry delays, is where the time goes."
                if paced
                else ", which is short here, so the ratio is dominated by retry delays and the "
                "reconcile settle delay."
            )
        )
    hostile = fs.get("hostile") if fs else None
    if hostile and "rate_seen" in hostile:
        early = sum(sum(r["per_second_429"][: int(hostile["warmup"])]) for r in hostile["runs"])
        total = sum(sum(r["per_second_429"]) for r in hostile["runs"])
        offsets = [
            abs(r["clock_offset_estimate"] - hostile["clock_offset"])
            for r in hostile["runs"]
            if r.get("clock_offset_estimate") is not None
        ]
        lines.append(
            f"- Hostile soak: {early:,} of the {total:,} 429s came in the first "
            f"{hostile['warmup']:g} s, before the client's limiter engaged (at half the rate it "
            "measured when the first 429 came, then climbing back by about 1 % of that per "
            "second); in the steady part the server saw "
            f"{hostile['rate_seen']['median']:.1f} req/s against its {hostile['rate_limit']:g}, "
            f"{hostile['throttled_share']['median']:.1%} of them refused."
            + (
                f" The client's estimate of the server's clock ended within "
                f"{max(offsets):.2f} s of the true {hostile['clock_offset']:+g} s, so "
                "reconciling in server time found every stored create."
                if offsets and hostile["totals"]["duplicates"] == 0
                else ""
            )
        )
    bk = results.get("bulk")
    if bk:
        m, s = bk["summary"], bk["settings"]
        sdk, bare, raw = m["sdk"], m["sdk_memory"], m["raw"]
        last = [m[name]["last_create_s"] for name in ("sdk", "sdk_memory", "raw")]
        lines.append(
            f"- Bulk: run_batch makes {sdk['requests_per_job']['median']:.2f} requests per job "
            f"against {raw['requests_per_job']['median']:.1f} for one task per job (one list per "
            f"use case per {s['interval']:g} s interval, not one get per job), and spends "
            f"{sdk['cpu_us_per_job']['median']:.0f} µs of client CPU per job against "
            f"{raw['cpu_us_per_job']['median']:.0f} µs, the journal "
            f"{m['journal_cpu_us_per_job']['median']:.0f} µs of it "
            f"({bare['cpu_us_per_job']['median']:.0f} µs without one). Its wall time is the "
            "creates, then the lifecycle (the same for all: same simulator seed), then up to "
            "one poll interval"
            + (
                f"; the last POST went out at {last[0]['median']:.2f} s with the journal, "
                f"{last[1]['median']:.2f} s without and {last[2]['median']:.2f} s for raw "
                f"aiohttp (all at most {s['concurrency']} creates at once)."
                if all(last)
                else "."
            )
        )
    return lines


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def render(
    results: dict[str, dict[str, Any]],
    commands: dict[str, list[str]],
    smoke: bool,
    facts: dict[str, Any] | None = None,
) -> str:
    """The whole RESULTS.md."""
    facts = facts or machine()
    packages = ", ".join(f"{k} {v}" for k, v in facts["packages"].items())
    out = [
        "# Benchmark results",
        "",
        "Generated by `python benchmarks/run.py`"
        + (" --smoke (tiny sizes: not figures to read)" if smoke else "")
        + f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; do not edit by hand.",
        "",
        f"- Machine: {facts['cores']} cores ({facts['cpu']}), {facts['os']}",
        f"- Python {facts['python']} ({facts['implementation']}); {packages}",
        f"- SDK at commit {facts['commit']}"
        + (" (with uncommitted changes)" if facts["dirty"] else "")
        + ", unless a section names its own (a section rerun alone)",
        "- Every figure is measured in this run on this machine (shared, noisy): medians "
        "with min\u2013max over the repetitions; ratios are paired within a repetition.",
        "- The simulator always runs as a separate process "
        "(`python -m happyrobot_async simulate ...`), so client and server never share "
        "a loop; on 2 cores they do share the CPU.",
        "",
        "Commands (`python benchmarks/run.py` runs them all, each in its own process):",
        "",
        "```",
        *(" ".join(command) for command in commands.values()),
        "```",
        "",
        "To rerun one benchmark and keep the other sections' figures: `python -m "
        "benchmarks.NAME --json benchmarks/results/NAME.json`, then `python benchmarks/run.py "
        "--render-only` (`run.py --only NAME` writes a page with that section alone).",
        "",
        "## Targets",
        "",
        *verdicts(results),
        "",
        "## Reading",
        "",
        *reading(results),
        "",
    ]
    for name, result in results.items():
        out += [f"## {TITLES[name]}", "", (sys.modules[f"benchmarks.{name}"].__doc__
                or "").strip(), "", BENCHMARKS[name](result), ""]  # fmt: skip
        if "simulator" in result and "Simulator: `" not in out[-2]:
            out += [f"Simulator: `{result['simulator']}` (port, seed vary).", ""]
        out += [f"Wall time: {result.get('wall_seconds', 0):.0f} s."]
        out += [f"SDK at commit {result['commit']}.", ""] if "commit" in result else [""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run them all (or `--only`), then write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/RESULTS.md")
    parser.add_argument("--render-only", action="store_true", help="from benchmarks/results/")
    args = parser.parse_args(argv)
    names = [name for name in args.only.split(",") if name]
    results, commands = {}, {}
    kept = ROOT / "benchmarks" / "results"
    for name in names:
        if args.render_only:
            results[name] = json.loads((kept / f"{name}.json").read_text())
            env = ENVIRONMENTS.get(name, {})
            commands[name] = [
                *(f"{k}={v}" for k, v in env.items()),
                "python",
                "-m",
                f"benchmarks.{name}",
            ]
            continue
        extra = ["--smoke"] if args.smoke else []
        results[name], commands[name] = run_one(name, extra)
        if not args.smoke:
            kept.mkdir(exist_ok=True)
            (kept / f"{name}.json").write_text(json.dumps(results[name], indent=1))
    if args.render_only:
        facts = json.loads((kept / "machine.json").read_text())
    else:
        facts = machine()
        if not args.smoke:
            (kept / "machine.json").write_text(json.dumps(facts, indent=1))
    text = render(results, commands, args.smoke, facts)
    out = args.out
    if out is None and not args.smoke:
        out = ROOT / "benchmarks" / "RESULTS.md"
    if out is not None:
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
