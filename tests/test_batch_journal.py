"""A journal that follows its jobs, retries on purpose, v0.1 journals (items 4 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_batch import QUICK, as_dict, client_for, jobs_for, run

import happyrobot_async as hr
from happyrobot_async._journal_records import jobs_fingerprint
from happyrobot_async.journal import Journal
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


async def test_adding_removing_and_reordering_jobs_creates_only_new_ones(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """Rerun with jobs appended, one removed and the rest reordered: only the new are created."""
    sim = await simulator_factory(**QUICK)
    jobs, path = jobs_for(sim, 8), tmp_path / "run.journal"
    first = await run(sim, jobs[:5], journal=path)
    sim.reset_stats()
    changed = [jobs[7], jobs[3], jobs[0], jobs[6], jobs[2], jobs[1]]  # k4 removed
    report = await run(sim, changed, journal=path)
    assert sim.stats.count("create") == 2 and sim.stats.duplicates == 0
    assert report.removed == ("k4",)
    assert [r.job.key for r in report.results] == ["k7", "k3", "k0", "k6", "k2", "k1"]
    ids = {r.job.key: r.model.id for r in first.results if r.model}
    assert all(ids[r.job.key] == r.model.id for r in report.results if r.job.key in ids and r.model)
    assert all(r.model is not None for r in report.results)


async def test_a_job_changed_after_it_was_sent_is_refused_before_any_request(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A job whose content changed since its create was sent: JournalError by name, no request."""
    sim = await simulator_factory(**QUICK)
    jobs, path = jobs_for(sim, 3), tmp_path / "run.journal"
    await run(sim, jobs, journal=path)
    sim.reset_stats()
    changed = hr.TrainingJob(
        **as_dict(jobs[1], from_model_id=sim.base_model_ids(jobs[1].use_case_id)[1])
    )
    with pytest.raises(hr.JournalError, match=r"k1 \(from_model_id\)"):
        await run(sim, [jobs[0], changed, jobs[2]], journal=path)
    assert sim.stats.total_requests == 0


async def test_retry_failed_creates_one_new_model_and_keeps_the_history(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """retry_failed: each failed job gets exactly one new model; the journal keeps both ids."""
    sim = await simulator_factory(seed=6, failure_rate=0.5, **QUICK)
    jobs, path = jobs_for(sim, 8), tmp_path / "run.journal"
    first = await run(sim, jobs, journal=path)
    failed = [r.job.key for r in first.results if r.status is hr.ModelStatus.FAILED]
    assert 0 < len(failed) < 8
    sim.reset_stats()
    retried = await run(sim, jobs, journal=path, retry_failed=True)
    assert sim.stats.count("create") == len(failed)
    for before, after in zip(first.results, retried.results, strict=True):
        assert before.model is not None and after.model is not None
        if before.job.key in failed:
            assert after.history == (before.model.id, after.model.id) and after.attempts == 2
        else:
            assert after.history == (before.model.id,) and after.model.id == before.model.id
    with Journal.open(path, jobs) as journal:
        assert [len(journal.state(job).history) for job in jobs] == [
            len(r.history) for r in retried.results
        ]
    sim.reset_stats()
    await run(sim, jobs, journal=path)
    assert sim.stats.count("create") == 0


async def test_results_carry_times_attempts_and_history(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """Each result says when its model was created and finished, and how long it was pending."""
    sim = await simulator_factory(**QUICK)
    jobs, path = jobs_for(sim, 3), tmp_path / "run.journal"
    seen: list[hr.BatchResult] = []
    report = await run(sim, jobs, journal=path, on_result=seen.append)
    assert sorted(r.index for r in seen) == [0, 1, 2]
    for result in report.results:
        assert result.created_at is not None and result.finished_at is not None
        assert result.started_at is not None and result.started_at <= result.created_at
        assert result.created_at <= result.finished_at and result.pending_seconds is not None
        assert result.attempts == 1 and len(result.history) == 1 and not result.open
    again = await run(sim, jobs, journal=path)
    assert [r.created_at for r in again.results] == [r.created_at for r in report.results]
    assert [r.finished_at for r in again.results] == [r.finished_at for r in report.results]


async def test_a_v01_journal_resumes_and_its_unproven_errors_are_reopened(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """v0.1 closed a job on a 401 during the lookup; after the upgrade the model is found."""
    sim = await simulator_factory(**QUICK)
    jobs, path = jobs_for(sim, 3), tmp_path / "run.journal"
    async with client_for(sim) as client:
        stored = await client.models.create(**as_dict(jobs[0], key=None))
        done = await client.models.create(**as_dict(jobs[1], key=None))
    at = stored.created_at.isoformat()
    header = {"type": "header", "fingerprint": jobs_fingerprint(jobs), "jobs": 3}
    records = [
        header,
        {"type": "intent", "job": 0, "at": at},
        {"type": "done", "job": 0, "model": None, "error": "GET /models: 401 Unauthorized"},
        {"type": "intent", "job": 1, "at": at},
        {"type": "created", "job": 1, "model_id": done.id},
    ]
    path.write_text("".join(json.dumps({"v": 1, **record}) + "\n" for record in records))
    sim.reset_stats()
    report = await run(sim, jobs, journal=path)
    assert [r.model.id for r in report.results[:2] if r.model] == [stored.id, done.id]
    assert report.results[2].model is not None
    assert sim.stats.count("create") == 1 and sim.stats.duplicates == 0
