"""run_batch end to end on the simulator: validation, faults, failures, journal resume."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

import happyrobot_async as hr
from happyrobot_async._jobs import validate_jobs
from happyrobot_async.journal import Journal
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

#: Fast retries; a retry's POST waits clock_skew + reconcile_tolerance after the last model.
FAST = hr.RetryPolicy(
    max_retries=8,
    initial_delay=0.001,
    max_delay=0.02,
    reconcile_delay=0.01,
    clock_skew=0.2,
    reconcile_tolerance=0.1,
)
QUICK = {"speed": 200.0, "pending_seconds": (1.0, 3.0), "training_seconds": (3.0, 10.0)}


def jobs_for(sim: Simulator, count: int, prefix: str = "job") -> list[hr.TrainingJob]:
    """`count` jobs spread over the simulator's use cases, keyed `k0`, `k1`, ..."""
    jobs = []
    for i in range(count):
        use_case_id = sim.use_case_ids[i % len(sim.use_case_ids)]
        jobs.append(
            hr.TrainingJob(
                use_case_id=use_case_id,
                name=f"{prefix}-{i:03d}",
                from_model_id=sim.base_model_ids(use_case_id)[0],
                train_sample_ids=[f"t{i}"],
                test_sample_ids=[f"e{i}"],
                key=f"k{i}",
            )
        )
    return jobs


def client_for(sim: Simulator, key: str | None = None, **options: Any) -> hr.HappyRobotClient:
    """A client of `sim` with fast retries (and another key or base URL if given)."""
    base_url = options.pop("base_url", sim.base_url)
    options.setdefault("retry_policy", FAST)
    return hr.HappyRobotClient(key or sim.api_key, base_url, **options)


async def run(sim: Simulator, jobs: list[Any], **options: Any) -> Any:
    """run_batch on `sim` with quick polls (client options: `key`, `base_url`, `client`)."""
    options.setdefault("poll_interval", 0.02)
    options.setdefault("max_poll_interval", 0.05)
    client_options = {k: options.pop(k) for k in ("key", "base_url", "client") if k in options}
    client_options.update(client_options.pop("client", {}))
    async with client_for(sim, **client_options) as client:
        return await hr.run_batch(client, jobs, **options)


_GHOSTS = itertools.count()


def ghost(sim: Simulator, use_case: int = 0) -> str:
    """A model id the server shows (GET answers 200) but refuses to clone (the create gets 422)."""
    use_case_id = sim.use_case_ids[use_case]
    model_id = "9" * 18 + f"{next(_GHOSTS):06d}"
    item = {"id": model_id, "created_at": "2024-01-01T00:00:00Z", "status": "active"}
    sim.add_raw_item(use_case_id, {**item, "name": "ghost", "use_case_id": use_case_id})
    return model_id


def as_dict(job: hr.TrainingJob, **changes: Any) -> dict[str, Any]:
    """A job as the mapping it could be given as (with `changes`; no key if it is None)."""
    data = {
        "use_case_id": job.use_case_id,
        "name": job.name,
        "from_model_id": job.from_model_id,
        "train_sample_ids": list(job.train_sample_ids),
        "test_sample_ids": list(job.test_sample_ids),
        "key": job.key,
    }
    merged = {**data, **changes}
    return {k: v for k, v in merged.items() if k != "key" or v is not None}


async def test_batch_with_faults_and_failures(simulator_factory: SimulatorFactory) -> None:
    """Every job gets one model and the simulator's final status, in input order, despite faults."""
    sim = await simulator_factory(
        seed=4,
        failure_rate=0.3,
        faults=[
            Fault("commit_then_fail", rate=0.1, route="create", then=504),
            Fault("drop", rate=0.1, route="create"),
            Fault("server_error", rate=0.1, route="list", status=502),
        ],
        **QUICK,
    )
    jobs = jobs_for(sim, 40)
    changes: list[hr.StatusChange] = []
    report = await run(sim, jobs, concurrency=8, on_change=changes.append)
    assert [r.job for r in report.results] == jobs
    assert sim.stats.models_created == 40 and sim.stats.duplicates == 0
    for result in report.results:
        assert result.error is None and result.model is not None
        stored = sim.get_model(result.model.id)
        assert stored.name == result.job.name
        assert result.status is not None and result.status.value == stored.status
        assert result.status.is_terminal
    counts = report.counts()
    assert counts.get("failed", 0) > 0 and counts.get("active", 0) > 0
    assert not report.ok
    assert {c.model.id for c in changes} == {r.model.id for r in report.results if r.model}


async def test_invalid_jobs_are_all_listed_before_anything_is_sent(simulator: Simulator) -> None:
    """Bad and duplicate jobs are reported together, by index, and nothing is sent."""
    good = jobs_for(simulator, 2)
    jobs: list[Any] = [
        good[0],
        as_dict(good[0], name="x", from_model_id="short", key=None),
        good[1],
        as_dict(good[0], key=None),
        "not a job",
    ]
    with pytest.raises(hr.InvalidJobsError) as info:
        await run(simulator, jobs)
    problems = info.value.problems
    assert [(problem.index, problem.field) for problem in problems] == [
        (1, "from_model_id"),
        (3, "name"),
        (4, None),
    ]
    assert "24 characters" in problems[0].message
    assert "same use case and name as job 0" in problems[1].message
    assert "must be an object" in problems[2].message
    assert simulator.stats.total_requests == 0


async def test_fatal_create_error_is_reported_per_job(simulator: Simulator) -> None:
    """A job the server refuses ends with its error, closed; the others still run."""
    jobs = jobs_for(simulator, 3)
    bad = hr.TrainingJob(**as_dict(jobs[1], from_model_id=ghost(simulator)))
    simulator.clock.speed = 200.0
    report = await run(simulator, [jobs[0], bad, jobs[2]])
    assert isinstance(report.results[1].error, hr.BadRequestError)
    assert report.results[1].model is None and not report.results[1].open
    assert report.results[0].model is not None and report.results[2].model is not None


async def test_raise_on_failure(simulator_factory: SimulatorFactory) -> None:
    """raise_on_failure=True raises BatchFailedError carrying the full report."""
    sim = await simulator_factory(failure_rate=1.0, **QUICK)
    with pytest.raises(hr.BatchFailedError) as info:
        await run(sim, jobs_for(sim, 2), raise_on_failure=True)
    assert [r.status for r in info.value.report.results] == [hr.ModelStatus.FAILED] * 2


async def test_rerun_with_journal_touches_nothing_finished(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A finished batch rerun with its journal sends no request and reports the same."""
    sim = await simulator_factory(**QUICK)
    jobs, journal = jobs_for(sim, 6), tmp_path / "run.journal"
    first = await run(sim, jobs, journal=journal)
    sim.reset_stats()
    again = await run(sim, jobs, journal=journal)
    assert sim.stats.total_requests == 0
    assert [r.model.id for r in again.results if r.model] == [
        r.model.id for r in first.results if r.model
    ]
    assert [r.status for r in again.results] == [r.status for r in first.results]


async def test_resume_adopts_sent_creates_and_watches_created(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """After a crash: a sent-but-unconfirmed create is adopted, a created one re-watched."""
    sim = await simulator_factory(**QUICK)
    jobs, path = jobs_for(sim, 4), tmp_path / "run.journal"
    async with client_for(sim) as client:
        with Journal.open(path, jobs) as journal:
            journal.intent(jobs[0])  # sent, stored, then the process died before "created"
            stored = await client.models.create(**as_dict(jobs[0], key=None))
            journal.intent(jobs[1])  # sent and stored and confirmed
            confirmed = await client.models.create(**as_dict(jobs[1], key=None))
            journal.created(jobs[1], confirmed.id)
            journal.intent(jobs[2])  # died before the POST left
    sim.reset_stats()
    report = await run(sim, jobs, journal=path)
    assert [r.model.id for r in report.results[:2] if r.model] == [stored.id, confirmed.id]
    assert sim.stats.count("create") == 2  # jobs 2 and 3 only
    assert sim.stats.duplicates == 0
    assert all(r.status is not None and r.status.is_terminal for r in report.results)


def test_job_mapping_errors_name_fields() -> None:
    """A job given as a mapping names each unknown field (with a guess) and each missing one."""
    with pytest.raises(hr.InvalidJobsError) as info:
        validate_jobs([{"name": "x", "colour": "red"}, {"name": "x"}])
    first, second = ([p.field for p in info.value.problems if p.index == i] for i in (0, 1))
    assert info.value.problems[0].message == "is not a job field"
    assert first == [
        "colour",
        "use_case_id",
        "from_model_id",
        "train_sample_ids",
        "test_sample_ids",
    ]
    assert second == ["use_case_id", "from_model_id", "train_sample_ids", "test_sample_ids"]


def test_misspelled_fields_get_a_did_you_mean() -> None:
    """A misspelled field name is reported with the field it probably meant."""
    job = {
        "use_case_id": "uc",
        "name": "x",
        "from_model_id": "f" * 24,
        "train_samples_ids": ["a"],
        "test_sample_ids": ["b"],
        "explain_tool": False,
    }
    with pytest.raises(hr.InvalidJobsError) as info:
        validate_jobs([job])
    messages = {p.field: p.message for p in info.value.problems}
    assert messages["train_samples_ids"] == "is not a job field (did you mean 'train_sample_ids'?)"
    assert messages["explain_tool"] == "is not a job field (did you mean 'explain_tools'?)"
    assert messages["train_sample_ids"] == "required, missing"


def test_keys_must_be_unique() -> None:
    """Two jobs with the same key are refused (the key names a job in the journal)."""
    one = {"use_case_id": "uc", "from_model_id": "f" * 24, "train_sample_ids": ["a"]}
    jobs = [{**one, "name": n, "test_sample_ids": [], "key": "same"} for n in ("a", "b")]
    with pytest.raises(hr.InvalidJobsError) as info:
        validate_jobs(jobs)
    assert [(p.index, p.field, p.message) for p in info.value.problems] == [
        (1, "key", "same key as job 0: 'same'")
    ]
