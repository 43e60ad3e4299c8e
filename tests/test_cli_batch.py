"""`batch` for real workflows: dry runs, preflight, one runner, --out as it happens, full disks.

Each test runs the command against a simulator over real HTTP, in-process (a
thread) or as a subprocess where a signal or a resource limit is needed.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import CliSimulator, Run, cli_process, make_jobs, wait_until, write_jobs
from test_batch import ghost

from happyrobot_async.journal import Journal
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

ROOT = Path(__file__).resolve().parent.parent


def batch(jobs: Path, journal: Path, *more: str) -> list[str]:
    """A `batch` command line with quick polls."""
    return ["batch", str(jobs), "--journal", str(journal), "--poll-interval", "0.02", *more]


def rows(path: Path) -> list[dict[str, object]]:
    """The JSON lines of an --out file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def error_lines(err: str) -> list[str]:
    """The `happyrobot-async: error:` lines of stderr (a traceback would show too)."""
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("happyrobot-async: error:")]


async def test_dry_run_prints_the_plan_and_creates_nothing(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """--dry-run preflights and prints what to create and what is done; no POST, no write."""
    jobs, journal = make_jobs(sim, 4), tmp_path / "j"
    path = write_jobs(tmp_path / "jobs.jsonl", jobs[:2])
    assert (await run(*batch(path, journal)))[0] == 0
    before = journal.read_bytes()
    path = write_jobs(tmp_path / "jobs.jsonl", jobs[1:])
    sim.reset_stats()
    code, out, _ = await run(*batch(path, journal, "--dry-run"))
    assert code == 0
    assert "  to create: 2  (k2, k3)" in out and "  already done: 1  (k1)" in out
    assert "not in the jobs file (left alone): 1  (k0)" in out
    assert sim.stats.count("create") == 0  # preflight only: the use cases of k2 and k3
    assert (sim.stats.count("list"), sim.stats.count("get")) == (2, 2)
    assert journal.read_bytes() == before
    code, _, _ = await run(*batch(path, tmp_path / "new.journal", "--dry-run"))
    assert code == 0 and not (tmp_path / "new.journal").exists()


async def test_preflight_problems_exit_2_before_any_post(
    sim: Simulator, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong key, or from_model_ids that do not exist: exit 2, each problem with its URL."""
    jobs = make_jobs(sim, 4)
    jobs[1]["from_model_id"] = jobs[3]["from_model_id"] = "0" * 24
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    code, out, err = await run(*batch(path, tmp_path / "j"))
    assert (code, out) == (2, "")
    assert "preflight: 1 problem(s), no model was created" in err
    assert re.search(
        r"does not exist.*\(job\(s\) k1, k3\): GET http://\S+/models/0{24}$", err, re.M
    )
    assert sim.stats.count("create") == 0 and sim.stats.count("get") == 3  # one per model id
    monkeypatch.setenv("HAPPYROBOT_API_KEY", "hr_wrong_key_0123456789")
    code, _, err = await run(*batch(path, tmp_path / "j"))
    assert code == 2 and err.count("the API key was refused (401 Unauthorized)") == 3
    assert f"GET {sim.base_url}/models?use_case_id={sim.use_case_ids[0]}" in err
    assert "hr_wrong_key" not in err and sim.stats.count("create") == 0


async def test_a_second_runner_is_refused_with_exit_2(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """While another runner holds the journal, batch exits 2 naming its pid, sending nothing."""
    jobs, journal = make_jobs(sim, 2), tmp_path / "j"
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    with Journal.open(journal, []):
        code, out, err = await run(*batch(path, journal))
    assert (code, out) == (2, "")
    assert error_lines(err) == [
        f"happyrobot-async: error: journal {journal} is in use by another runner "
        f"(pid {os.getpid()}); one runner per journal: wait for it to end (or stop it), then rerun"
    ]
    assert sim.stats.total_requests == 0
    assert (await run(*batch(path, journal)))[0] == 0


async def test_out_gets_each_row_as_its_job_ends(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """A job that ends is in --out at once, while the others still train; all rows at the end."""
    # nothing ends unless told
    sim = await cli_simulator(seed=9, speed=0.0, failure_rate=0.0, url_in_env=False)
    jobs = make_jobs(sim, 4)
    path, out = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "out.jsonl"
    argv = [*batch(path, tmp_path / "j", "--out", str(out)), "--base-url", sim.base_url]
    running = asyncio.ensure_future(run(*argv))
    names = {job["name"] for job in jobs}
    await wait_until(lambda: sum(model.name in names for model in sim.models) == 4)
    first = next(model for model in sim.models if model.name in names)
    sim.set_status(first.id, "active")
    await wait_until(lambda: out.exists() and out.read_text().count("\n") == 1)
    (row,) = rows(out)
    assert (row["model_id"], row["status"], row["error"]) == (first.id, "active", None)
    assert not running.done()
    sim.clock.speed = 1000.0
    code, _, _ = await running
    assert code == 0
    final = rows(out)
    assert [r["key"] for r in final] == [job["key"] for job in jobs]
    assert all(r["status"] == "active" and r["attempts"] == 1 for r in final)
    assert all(r["created_at"] and r["finished_at"] and r["pending_seconds"] for r in final)


async def test_out_as_csv(sim: Simulator, run: Run, tmp_path: Path) -> None:
    """--out results.csv writes CSV with a header and one row per job, in input order."""
    jobs = make_jobs(sim, 3)
    path, out = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "results.csv"
    code, _, _ = await run(*batch(path, tmp_path / "j", "--out", str(out)))
    assert code == 0
    with out.open(newline="") as file:
        table = list(csv.DictReader(file))
    assert [r["key"] for r in table] == ["k0", "k1", "k2"]
    assert table[0]["from_model_id"] == jobs[0]["from_model_id"]
    assert all(r["status"] == "active" and len(r["history"]) == 24 for r in table)
    assert all(float(r["pending_seconds"]) >= 0 and r["error"] == "" for r in table)


async def test_out_in_a_missing_folder_exits_2_before_anything(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """An --out in a folder that does not exist is refused before any request or journal."""
    path = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 2))
    code, _, err = await run(*batch(path, tmp_path / "j", "--out", str(tmp_path / "no" / "o")))
    assert code == 2 and error_lines(err) == [
        f"happyrobot-async: error: --out {tmp_path / 'no' / 'o'}: folder {tmp_path / 'no'} "
        "does not exist"
    ]
    assert sim.stats.total_requests == 0 and not (tmp_path / "j").exists()


async def test_a_full_disk_under_out_is_one_line_and_nothing_is_lost(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """--out on a full disk (/dev/full): exit 2, one line; a rerun resumes with no duplicate."""
    jobs = make_jobs(sim, 4)
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    code, _, err = await run(*batch(path, tmp_path / "j", "--out", "/dev/full"))
    assert code == 2 and error_lines(err) == [
        "happyrobot-async: error: cannot write --out /dev/full: No space left on device; "
        "nothing is lost (the journal has every result): rerun the same command to resume "
        "and write it again"
    ]
    out = tmp_path / "out.jsonl"
    code, _, _ = await run(*batch(path, tmp_path / "j", "--out", str(out)))
    assert code == 0 and [r["status"] for r in rows(out)] == ["active"] * 4
    assert sim.stats.models_created == 4 and sim.stats.duplicates == 0


async def test_a_full_disk_under_the_journal_is_one_line_and_nothing_is_lost(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """The journal hits a file size limit mid-run (EFBIG): exit 2, one line; a rerun resumes."""
    jobs = make_jobs(sim, 10)
    path, journal = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "j"
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))\n"
        "from happyrobot_async.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", script, *batch(path, journal, "--view", "plain")),
        cwd=ROOT,
        # no coverage in this child: its data file would hit the file-size limit too
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS")},
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, raw = await asyncio.wait_for(process.communicate(), timeout=60)
    err = raw.decode()
    assert process.returncode == 2, err
    assert error_lines(err) == [
        f"happyrobot-async: error: cannot write journal {journal}: File too large; nothing is "
        "lost: free the space (or fix the permissions) and rerun the same command to resume"
    ]
    assert 0 < journal.stat().st_size <= 4000
    code, _, err = await run(*batch(path, journal))
    assert code == 0 and "resuming from journal" in err
    assert sim.stats.models_created == 10 and sim.stats.duplicates == 0


async def test_a_hand_edited_journal_line_is_named(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """A bad line in the journal exits 2 naming its number; a blank last line is fine."""
    path, journal = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 2)), tmp_path / "j"
    assert (await run(*batch(path, journal)))[0] == 0
    text = journal.read_text()
    journal.write_text(text + "\n")  # a blank last line
    code, _, err = await run(*batch(path, journal))
    assert code == 0, err
    lines = text.splitlines()
    lines[2] = lines[2].replace('"type":"', '"type":"x')
    journal.write_text("\n".join(lines) + "\n")
    code, _, err = await run(*batch(path, journal))
    assert code == 2
    (line,) = error_lines(err)
    assert line.startswith(f"happyrobot-async: error: journal {journal}: line 3 is not valid: ")
    assert "unknown record type" in line


async def test_a_jobs_file_with_a_bom_is_read(sim: Simulator, run: Run, tmp_path: Path) -> None:
    """A jobs file saved with a UTF-8 byte order mark (as some editors do) is accepted."""
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + write_jobs(path, make_jobs(sim, 2)).read_bytes())
    code, _, err = await run(*batch(path, tmp_path / "j"))
    assert code == 0, err
    assert sim.stats.models_created == 2


async def test_jobs_added_and_removed_between_runs(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """Jobs appended are created; removed ones reported and left alone; none created twice."""
    jobs, journal = make_jobs(sim, 5), tmp_path / "j"
    path = write_jobs(tmp_path / "jobs.jsonl", jobs[:3])
    assert (await run(*batch(path, journal)))[0] == 0
    path = write_jobs(tmp_path / "jobs.jsonl", [jobs[4], jobs[2], jobs[3], jobs[1]])
    code, _, err = await run(*batch(path, journal))
    assert code == 0
    assert "2 done, 0 created, 0 sent but unconfirmed, 2 new, 1 no longer in the jobs file" in err
    assert f"1 job(s) of the journal are no longer in {path}, left alone: k0" in err
    assert sim.stats.models_created == 5 and sim.stats.duplicates == 0


async def test_retry_failed_and_retry_errors(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """--retry-failed trains failed jobs again, --retry-errors refused ones; plain reruns do not."""
    sim = await cli_simulator(seed=21, speed=100.0, failure_rate=0.5)
    jobs = make_jobs(sim, 6)
    jobs[5]["from_model_id"] = ghost(sim)  # refused: 422
    path, journal, out = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "j", tmp_path / "o"
    assert (await run(*batch(path, journal, "--out", str(out))))[0] == 1
    first = rows(out)
    failed = [r["key"] for r in first if r["status"] == "failed"]
    assert failed and first[5]["error"] and first[5]["attempts"] == 1
    assert (await run(*batch(path, journal)))[0] == 1
    assert sim.stats.count("create") == 6  # a plain rerun sends nothing
    await run(*batch(path, journal, "--out", str(out), "--retry-failed"))
    retried = rows(out)
    assert sim.stats.count("create") == 6 + len(failed)
    for before, after in zip(first[:5], retried[:5], strict=True):  # k5 was refused
        again = before["key"] in failed
        assert len(after["history"]) == (2 if again else 1)  # type: ignore[arg-type]
        assert after["history"][0] == before["model_id"]  # type: ignore[index]
    await run(*batch(path, journal, "--out", str(out), "--retry-errors"))
    assert rows(out)[5]["attempts"] == 2
    assert sim.stats.count("create") == 6 + len(failed) + 1
    assert sim.stats.duplicates == len(failed)  # the retried names: two models each, on purpose


async def test_deadline_ends_transient_failures_open(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """With every POST dropped, --deadline ends the jobs as errors, open: the rerun creates them."""
    sim = await cli_simulator(seed=4, speed=100.0, failure_rate=0.0)
    sim.faults = [Fault("drop", route="create")]
    path, journal = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 2)), tmp_path / "j"
    out = tmp_path / "o.jsonl"
    code, _, _ = await run(*batch(path, journal, "--deadline", "1", "--out", str(out)))
    assert code == 1 and all("create" in str(r["error"]) for r in rows(out))
    sim.faults = []
    code, _, err = await run(*batch(path, journal))
    assert code == 0 and "2 sent but unconfirmed" in err
    assert sim.stats.models_created == 2 and sim.stats.duplicates == 0


async def test_ctrl_c_completes_out_in_input_order(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """SIGINT mid-batch still leaves --out with one row per job, in input order."""
    sim = await simulator_factory(seed=12, speed=1.0, failure_rate=0.0)
    jobs = make_jobs(sim, 6)
    path, out = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "out.jsonl"
    argv = [*batch(path, tmp_path / "j", "--out", str(out), "--view", "plain")]
    process = await cli_process(sim, *argv)
    assert process.stdout is not None
    await asyncio.wait_for(process.stdout.readline(), timeout=20)  # a model is being watched
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 130
    final = rows(out)
    assert [r["key"] for r in final] == [job["key"] for job in jobs]
    assert all(str(r["error"]).startswith("not finished") for r in final)
