"""The benchmarks' smoke mode: each runs once at a tiny size and counts what it must."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from benchmarks import (
    bulk,
    fault_soak,
    floor,
    profiling,
    run,
    speedups,
    structuring,
    throughput,
    versus,
    watcher_scale,
)
from happyrobot_async import _json


def smoke(module: Any) -> dict[str, Any]:
    """Run `module`'s benchmark in smoke mode, in this process."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args([])
    args.smoke = True
    args.json = None
    result: dict[str, Any] = module._run(args)
    return result


def test_throughput_smoke() -> None:
    """Every variant completes its requests for both operations; the ratios are positive."""
    result = smoke(throughput)
    assert {row["op"] for row in result["summary"]} == {"get", "create"}
    for row in result["summary"]:
        assert row["sdk_raw_rps"]["median"] > 0
        for name in result["variants"]:
            assert row[f"{name}_rps"]["median"] > 0
    assert "happyrobot_async" in throughput.render(result)


def test_watcher_scale_smoke() -> None:
    """The watcher lists each use case at most once per cycle and sees every probe change."""
    result = smoke(watcher_scale)
    settings, w = result["settings"], result["summary"]["watcher"]
    assert w["requests_per_cycle"]["max"] <= settings["use_cases"] + 1e-9
    assert w["gets_in_window"] == 0
    assert w["all_live"]
    assert w["latency_samples"] == 2 * settings["probes"]
    n = result["summary"]["naive"]
    assert n["latency_samples"] == 2 * settings["probes"]
    assert round(n["requests_per_model_cycle"]["median"]) == 1
    assert "TrainingWatcher" in watcher_scale.render(result)


def test_fault_soak_smoke() -> None:
    """Every job gets exactly one model, faults and all: no duplicate, none lost.

    Both scenarios: the plain soak and the hostile one (faults + a server rate limit +
    a server clock 5 minutes behind, default client options).
    """
    result = smoke(fault_soak)
    hostile = result["hostile"]
    for totals, jobs in (
        (result["totals"], result["jobs"]),
        (result["clean_totals"], result["jobs"]),
        (hostile["totals"], hostile["jobs"]),
    ):
        assert totals["duplicates"] == 0
        assert totals["lost"] == 0
        assert totals["not_stored"] == 0
        assert totals["models_created"] == jobs
    assert result["faults_fired"]["median"] > 0
    (run_,) = hostile["runs"]
    assert run_["faults"].get("server_rate_limit", 0) > 0  # the server's limit did refuse
    assert sum(count for kind, count in run_["faults"].items() if kind != "server_rate_limit")
    assert fault_soak.hostile_verdicts(hostile)[0]
    text = fault_soak.render(result)
    assert "duplicates" in text and "### Hostile" in text
    lines = run.verdicts({"fault_soak": result})
    assert any(line.startswith("- hostile soak (") and "**met**" in line for line in lines)


def test_structuring_smoke() -> None:
    """Every variant structures the same dict; ours is timed against the others."""
    result = smoke(structuring)
    assert {"ours", "by_hand"} <= set(result["variants"])
    assert "suggested" not in result["variants"]
    assert all(row["ours"]["median"] > 0 for row in result["summary"])
    assert "ours" in structuring.render(result)


def test_profiling_and_results_page_smoke() -> None:
    """The profiles cover exactly N requests, the decode N models; run.py renders the page."""
    result = smoke(profiling)
    assert set(result["profiles"]) == {"get", "create", "poll loop"}
    for op in ("get", "create"):
        assert result["profiles"][op]["requests"] == result["requests"]
    assert result["decode"]["models"] == 1000
    assert result["decode"]["ours"]["n"] == result["decode"]["json_loads"]["n"] == 1
    assert "what_ifs" not in result
    page = run.render({"profiling": result}, {"profiling": ["python", "-m", "x"]}, smoke=True)
    assert "## 5. Profile" in page
    assert "suggested" not in page and "what-if" not in page


def test_bulk_smoke() -> None:
    """Every variant ends every job with exactly one model; run.py turns the ratios into targets."""
    result = smoke(bulk)
    settings, m = result["settings"], result["summary"]
    jobs = settings["jobs"] * settings["repeat"]
    for name in bulk.VARIANTS:
        assert m[name]["jobs_ended"] == m[name]["models_created"] == jobs
        assert m[name]["duplicates"] == 0
        assert m[name]["cpu_us_per_job"]["median"] > 0
        assert m[name]["last_create_s"] is not None
    assert m["sdk"]["requests_per_job"]["median"] < m["raw"]["requests_per_job"]["median"]
    assert m["sdk_raw_wall"]["median"] > 0 and m["sdk_raw_cpu"]["median"] > 0
    assert "run_batch + journal" in bulk.render(result)
    lines = run.verdicts({"bulk": result})
    assert any(line.startswith("- bulk, ") and "client CPU per job" in line for line in lines)
    page = run.render({"bulk": result}, {"bulk": ["python", "-m", "x"]}, smoke=True)
    assert "## 6. Bulk" in page and "- Bulk: run_batch makes" in page


@pytest.mark.skipif(_json.BACKEND != "orjson", reason="needs [speedups]: CI's second pass")
def test_speedups_smoke() -> None:
    """With orjson, the SDK and the raw floor both complete; run.py judges it against 1.0."""
    result = smoke(speedups)
    assert result["variants"] == ["raw", "sdk"] and result["json_backend"] == "orjson"
    assert all(row["sdk_raw_rps"]["median"] > 0 for row in result["summary"])
    lines = run.verdicts({"speedups": result})
    assert any(
        line.startswith("- with `[speedups]`, get") and "target ≥ 1.0" in line for line in lines
    )


def test_versus_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """The SDK at a commit (HEAD here) and this checkout run side by side with the raw floor."""
    assert versus.main(["HEAD", "--requests", "40", "--repeat", "1", "--concurrency", "4"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("get c=4, client CPU") and "HEAD" in line and "this checkout" in line


def test_floor_smoke() -> None:
    """Every variant of the floor completes; the parts are the paired differences they name."""
    result = smoke(floor)
    assert [row["op"] for row in result["summary"]] == ["get", "create"]
    for row in result["summary"]:
        assert all(row[name]["median"] > 0 for name in floor.VARIANTS)
        run_ = next(r for r in result["runs"] if r["op"] == row["op"])
        assert row["sdk_work"]["median"] == run_["sdk"]["cpu_us"] - run_["tuned"]["cpu_us"]
        budget = floor.CPU_TARGET * run_["raw"]["cpu_us"] - run_["tuned"]["cpu_us"]
        assert row["budget"]["median"] == budget
    page = run.render({"floor": result}, {"floor": ["python", "-m", "x"]}, smoke=True)
    assert "## 1c. Floor" in page and "- Floor, get at concurrency 8: raw aiohttp spends" in page
