"""`status` and the journal summary: counts, running jobs and durations, read-only and lock-free.

Most tests read a journal written line by line with known times, so every
number is exact; the others read journals of real batches on the simulator,
one of them while its batch runs.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Run, write_jobs
from test_batch import jobs_for, run

import happyrobot_async as hr
from happyrobot_async import cli
from happyrobot_async._journal_io import JournalLock
from happyrobot_async._journal_records import encode
from happyrobot_async._journal_summary import read_summary
from happyrobot_async.cli._status import render
from happyrobot_async.errors import JournalError
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
NOW = T0 + timedelta(seconds=20)
REFUSAL = "POST /models: 422 Unprocessable Entity: from_model_id is not in this use case"


def model(job: str, status: str, name: str) -> dict[str, Any]:
    """A terminal model as a `done` record holds it."""
    return {"id": f"{job * 24}"[:24], "status": status, "name": name, "created_at": "x"}


def line(kind: str, job: tuple[str, ...] | None, seconds: float, **fields: Any) -> bytes:
    """One journal line of `kind`, `seconds` after T0."""
    record: dict[str, Any] = {"type": kind, "at": T0 + timedelta(seconds=seconds), **fields}
    if job is not None:
        record["job"] = job
    if kind == "intent":
        record["content"] = {"name": "0123456789ab"}
    return encode(record)


def known_journal(path: Path) -> Path:
    """A journal of six jobs with known times (seconds after T0), written as a runner would.

    a: active; b (use case + name): failed; c: refused; d: training since 8;
    e: sent at 9, unconfirmed; f: failed at 6, retried at 11, created at 12.
    """
    a, b, c, d, e, f = ("a",), ("uc1", "Beta"), ("c",), ("d",), ("e",), ("f",)
    lines = [
        line("header", None, 0),
        *(line("intent", job, 1) for job in (a, b, f)),
        line("intent", d, 2),
        line("created", a, 2, model_id="a" * 24),
        line("created", f, 2, model_id="f" * 24),
        line("status", a, 2, model_id="a" * 24, status="pending"),
        line("created", d, 2.5, model_id="d" * 24),
        line("intent", c, 3),
        line("created", b, 3, model_id="b" * 24),
        line("status", f, 3, model_id="f" * 24, status="training"),
        line("done", c, 3.5, model=None, error=REFUSAL),
        line("status", b, 4, model_id="b" * 24, status="training"),
        line("status", a, 5, model_id="a" * 24, status="training"),
        line("done", f, 6, model=model("f", "failed", "Foxtrot"), error=None),
        line("status", d, 8, model_id="d" * 24, status="training"),
        line("intent", e, 9),
        line("done", b, 10, model=model("b", "failed", "Beta"), error=None),
        line("intent", f, 11),
        line("created", f, 12, model_id="9" * 24),
        line("done", a, 15, model=model("a", "active", "Alpha"), error=None),
    ]
    path.write_bytes(b"".join(lines))
    return path


def test_counts_running_jobs_and_durations_are_exact(tmp_path: Path) -> None:
    """Each job lands in its state, running jobs show their status and time, durations are exact."""
    summary = read_summary(known_journal(tmp_path / "j"), now=NOW, jobs={("g",): "Golf"})
    assert summary.counts == {
        "active": 1,
        "failed": 1,
        "refused": 1,
        "watching": 2,
        "sent": 1,
        "never sent": 1,
    }
    running = summary.to_json()["running"]
    assert [(r["job"], r["model_id"], r["status"], r["for_seconds"]) for r in running] == [
        ("d", "d" * 24, "training", 12.0),
        ("e", None, "sent", 11.0),
        ("f", "9" * 24, "created", 8.0),
    ]
    durations = summary.to_json()["durations"]
    assert durations["waiting"] == {"count": 6, "median": 2.5, "max": 11.0}
    assert durations["sending"] == {"count": 5, "median": 1.0, "max": 2.0}
    assert durations["pending"] == {"count": 3, "median": 3.0, "max": 5.5}
    assert durations["training"] == {"count": 2, "median": 8.0, "max": 10.0}
    failures = [
        (f["job"], f["name"], f["status"], f["error"]) for f in summary.to_json()["failures"]
    ]
    assert failures == [("uc1/Beta", "Beta", "failed", None), ("c", None, "refused", REFUSAL)]


def test_status_prints_the_summary_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` prints the counts, the running jobs with how long, and the durations; --json too."""
    path = known_journal(tmp_path / "j")
    assert cli.main(["status", "--journal", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 6 and data["counts"]["watching"] == 2
    assert data["started_at"] == T0.isoformat()
    text = render(read_summary(path, now=NOW), with_jobs_file=False)
    assert "done: 1 active, 1 failed, 1 refused" in text
    assert "open: 2 created & watching, 1 sent unconfirmed, never sent: see --jobs" in text
    rows = [row.split() for row in text.splitlines() if row.startswith(("d ", "e ", "f "))]
    assert rows == [
        ["d", "-", "d" * 24, "training", "12", "s"],
        ["e", "-", "-", "sent", "11", "s"],
        ["f", "-", "9" * 24, "created", "8.0", "s"],
    ]
    assert "training            2      8.0 s   10 s" in text


def test_a_jobs_file_adds_the_jobs_never_sent_and_their_names(tmp_path: Path) -> None:
    """With --jobs, jobs the journal never saw count as never sent, and keyed jobs get names."""
    path = known_journal(tmp_path / "j")
    base = {"use_case_id": "u" * 24, "from_model_id": "m" * 24, "train_sample_ids": ["t"]}
    jobs = [
        {**base, "name": "Delta", "key": "d", "test_sample_ids": ["x"]},
        {**base, "name": "Golf", "key": "g", "test_sample_ids": ["x"]},
    ]
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    from happyrobot_async.cli._status import summary_for

    summary = summary_for(path, tmp_path / "jobs.jsonl", NOW)
    assert summary.counts["never sent"] == 1
    assert {job.label: job.name for job in summary.jobs}["d"] == "Delta"
    assert "1 never sent" in render(summary, with_jobs_file=True)


def test_a_torn_last_line_is_skipped_and_left_in_place(tmp_path: Path) -> None:
    """A line being written is ignored and never cut: the file is byte for byte the same."""
    path = known_journal(tmp_path / "j")
    with path.open("ab") as file:
        file.write(b'{"v":2,"type":"status","job":["d"],"model_id":"dddd')
    before = path.read_bytes()
    assert read_summary(path, now=NOW).counts["watching"] == 2
    assert path.read_bytes() == before


def test_status_takes_no_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While a runner holds the journal's lock, status still answers, and creates no lock file."""
    path = known_journal(tmp_path / "j")
    assert cli.main(["status", "--journal", str(path)]) == 0
    assert not path.with_name("j.lock").exists()
    lock = JournalLock.acquire(path)
    try:
        assert cli.main(["status", "--journal", str(path)]) == 0
    finally:
        lock.release()
    assert capsys.readouterr().out.count("done: 1 active") == 2


def test_a_v1_journal_or_a_missing_one_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A v0.1 journal says to upgrade it with a run first; a missing one says it cannot be read."""
    old = tmp_path / "old"
    old.write_text('{"v":1,"type":"header","fingerprint":"ab","jobs":2}\n')
    with pytest.raises(JournalError, match=r"written by happyrobot-async 0\.1.*upgrade it"):
        read_summary(old)
    assert cli.main(["status", "--journal", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("happyrobot-async: error: cannot read journal") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([line("intent", ("a",), 1)], "line 1 is not a journal header"),
        ([line("header", None, 0), b"{not json\n", line("intent", ("a",), 1)], "line 2 is not"),
        ([line("header", None, 0), line("header", None, 1)], "line 2 is not valid"),
    ],
)
def test_a_damaged_journal_names_its_bad_line(
    tmp_path: Path, lines: list[bytes], problem: str
) -> None:
    """A bad line that is not the last (a torn write) is a JournalError naming its number."""
    path = tmp_path / "j"
    path.write_bytes(b"".join(lines))
    with pytest.raises(JournalError, match=problem):
        read_summary(path)


def test_an_empty_journal_says_its_batch_has_not_begun(tmp_path: Path) -> None:
    """A journal with no line yet (a batch starting) is summarized as not begun, zero jobs."""
    (tmp_path / "j").write_bytes(b"")
    summary = read_summary(tmp_path / "j")
    assert summary.jobs == () and summary.started_at is None
    assert render(summary, with_jobs_file=False).endswith("is empty: its batch has not begun")


async def test_a_real_batch_journal_matches_its_report(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A finished batch's summary has the report's counts and a pending time for every model."""
    sim = await simulator_factory(seed=4, speed=200.0, failure_rate=0.3)
    report = await run(sim, jobs_for(sim, 12), journal=tmp_path / "j")
    summary = read_summary(tmp_path / "j")
    counts = {state: n for state, n in summary.counts.items() if n}
    assert counts == report.counts() and "failed" in counts
    assert summary.durations()["pending"].count == 12 and summary.running == []


async def test_status_reads_a_journal_while_its_batch_runs(
    simulator_factory: SimulatorFactory, tmp_path: Path, run_cli: Run
) -> None:
    """Mid-batch (the runner holding the lock), status shows every job open; the batch then ends."""
    sim = await simulator_factory(seed=5, speed=0.0, failure_rate=0.0)  # time stands still
    pending: set[str] = set()
    all_pending = asyncio.Event()

    def on_change(change: hr.StatusChange) -> None:
        pending.add(change.model.id)
        if len(pending) == 6:
            all_pending.set()

    journal = tmp_path / "j"
    batch = asyncio.create_task(run(sim, jobs_for(sim, 6), journal=journal, on_change=on_change))
    await asyncio.wait_for(all_pending.wait(), timeout=30)
    code, out, err = await run_cli("status", "--journal", str(journal))
    assert (code, err) == (0, "")
    assert "6 job(s)" in out and "done: 0 active, 0 failed, 0 refused" in out
    sim.clock.advance(10_000)  # every model trains and ends active
    report = await asyncio.wait_for(batch, timeout=30)
    assert report.ok and read_summary(journal).counts["active"] == 6


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `cli.main` in a thread (the event loop keeps serving); exit code, out, err."""

    async def call(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli.main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call
