"""Before any create: preflight, the dry-run plan, the one-runner lock (items 2 and 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_batch import QUICK, jobs_for, run

import happyrobot_async as hr
from happyrobot_async import errors
from happyrobot_async._outcomes import BatchPlan
from happyrobot_async.journal import Journal
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


async def test_a_wrong_key_is_caught_before_any_create(simulator: Simulator) -> None:
    """A refused key: one problem per use case, with its URL; no GET, no POST, no key shown."""
    jobs = jobs_for(simulator, 6)
    with pytest.raises(errors.PreflightError) as info:
        await run(simulator, jobs, key="hr_wrong_key_0123456789")
    problems = info.value.problems
    assert sorted(p.url for p in problems) == sorted(
        f"GET {simulator.base_url}/models?use_case_id={uc}" for uc in simulator.use_case_ids
    )
    assert {p.message for p in problems} == {"the API key was refused (401 Unauthorized)"}
    assert {p.jobs for p in problems} == {("k0", "k3"), ("k1", "k4"), ("k2", "k5")}
    assert simulator.stats.count("list") == 3 and simulator.stats.count("get") == 0
    assert simulator.stats.count("create") == 0
    assert "hr_wrong_key" not in str(info.value)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("origin", "not found (404): the base URL must end in /api/v1"),
        ("redirect", "redirected (307 Temporary Redirect): the base URL is probably wrong"),
        ("forbidden", "this API key may not use the models API (403 Forbidden)"),
    ],
)
async def test_setup_mistakes_are_named(simulator: Simulator, setup: str, message: str) -> None:
    """A base URL without /api/v1, a redirecting proxy, a forbidden key: named, nothing created."""
    options: dict[str, str] = {}
    if setup == "origin":
        options["base_url"] = simulator.origin
    elif setup == "redirect":
        simulator.faults = [Fault("redirect", route="list")]
    else:
        options["key"] = simulator.add_api_key(forbidden=True)
    with pytest.raises(errors.PreflightError) as info:
        await run(simulator, jobs_for(simulator, 3), **options)
    assert len(info.value.problems) == 3
    assert all(p.message.startswith(message) for p in info.value.problems)
    assert simulator.stats.count("create") == 0 and simulator.stats.count("get") == 0


async def test_each_from_model_id_is_fetched_once_and_every_missing_one_listed(
    simulator: Simulator,
) -> None:
    """Ten jobs over three known and two missing models: five GETs, two problems, no POST."""
    jobs = jobs_for(simulator, 10)
    missing = ["1" * 24, "2" * 24]
    jobs[4] = hr.TrainingJob(**{**_fields(jobs[4]), "from_model_id": missing[0]})
    jobs[7] = hr.TrainingJob(**{**_fields(jobs[7]), "from_model_id": missing[1]})
    jobs[9] = hr.TrainingJob(**{**_fields(jobs[9]), "from_model_id": missing[0]})
    with pytest.raises(errors.PreflightError) as info:
        await run(simulator, jobs)
    assert simulator.stats.count("get") == 5
    assert [(p.url.rsplit("/", 1)[1], p.jobs) for p in info.value.problems] == [
        (missing[0], ("k4", "k9")),
        (missing[1], ("k7",)),
    ]
    assert simulator.stats.count("create") == 0
    assert "2 problem(s)" in str(info.value)


def _fields(job: hr.TrainingJob) -> dict[str, object]:
    return {
        "use_case_id": job.use_case_id,
        "name": job.name,
        "from_model_id": job.from_model_id,
        "train_sample_ids": job.train_sample_ids,
        "test_sample_ids": job.test_sample_ids,
        "key": job.key,
    }


async def test_dry_run_returns_the_plan_and_sends_no_post(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """dry_run=True: created, sent, new and done jobs are planned; nothing is created or written."""
    sim = await simulator_factory(failure_rate=1.0, **QUICK)
    jobs, path = jobs_for(sim, 6), tmp_path / "run.journal"
    await run(sim, jobs[:2], journal=path)  # both trained, both failed
    with Journal.open(path, jobs) as journal:
        journal.intent(jobs[2])
        journal.intent(jobs[3])
        journal.created(jobs[3], "c" * 24)
    before = path.read_bytes()
    sim.reset_stats()
    plan = await run(sim, jobs[1:], journal=path, dry_run=True, retry_failed=True)
    assert plan == BatchPlan(
        create=("k4", "k5"), reconcile=("k2",), watch=("k3",), retry=("k1",), removed=("k0",)
    )
    assert plan.counts()["create"] == 2
    assert sim.stats.count("create") == 0 and sim.stats.count("list") == 3
    assert path.read_bytes() == before


async def test_a_locked_journal_refuses_the_run_before_any_request(
    simulator: Simulator, tmp_path: Path
) -> None:
    """run_batch on a journal another runner holds raises JournalError and sends nothing."""
    jobs, path = jobs_for(simulator, 2), tmp_path / "run.journal"
    with Journal.open(path, jobs), pytest.raises(hr.JournalError, match="in use by another"):
        await run(simulator, jobs, journal=path)
    assert simulator.stats.total_requests == 0
