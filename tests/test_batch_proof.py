"""Only proof closes a job; transient failures are retried until the deadline (items 1 and 6).

| what happened to the job            | closed? | next run                     |
|-------------------------------------|---------|------------------------------|
| its model reached active / failed   | yes     | nothing sent                 |
| POST refused 400 / 404 / 422        | yes     | nothing sent (--retry-errors)|
| ... after an earlier ambiguous POST | no      | looked up, then sent         |
| POST got 401 / 403 / 3xx            | no      | looked up, then sent         |
| connection, 5xx, unsettled create   | no      | retried in the run, deadline |
| the lookup of an earlier POST failed| no      | looked up again              |
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_batch import QUICK, as_dict, client_for, jobs_for, run

import happyrobot_async as hr
from happyrobot_async.journal import Journal
from happyrobot_async.testing import Fault
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


@pytest.mark.parametrize(
    ("fault", "closed"),
    [
        (Fault("client_error", route="create", status=400), True),
        (Fault("client_error", route="create", status=404), True),
        (Fault("client_error", route="create", status=422), True),
        (Fault("client_error", route="create", status=401), False),
        (Fault("client_error", route="create", status=403), False),
        (Fault("redirect", route="create"), False),
    ],
    ids=["400", "404", "422", "401", "403", "307"],
)
async def test_only_a_refused_post_closes_a_job(
    simulator_factory: SimulatorFactory, tmp_path: Path, fault: Fault, closed: bool
) -> None:
    """Every POST gets `fault`; a rerun without it skips closed jobs and creates open ones."""
    sim = await simulator_factory(faults=[fault], **QUICK)
    jobs, path = jobs_for(sim, 3), tmp_path / "run.journal"
    first = await run(sim, jobs, journal=path)
    assert all(r.error is not None and r.model is None for r in first.results)
    assert [r.open for r in first.results] == [not closed] * 3
    assert sim.stats.models_created == 0
    sim.faults = []
    sim.reset_stats()
    again = await run(sim, jobs, journal=path)
    if closed:
        assert sim.stats.count("create") == 0
        assert [str(r.error) for r in again.results] == [str(r.error) for r in first.results]
    else:
        assert sim.stats.count("create") == 3 and sim.stats.duplicates == 0
        assert all(r.model is not None and r.status is not None for r in again.results)
        assert [r.attempts for r in again.results] == [2, 2, 2]


async def test_a_refusal_after_an_ambiguous_attempt_proves_nothing(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A job whose earlier POST was never confirmed stays open when its resend is refused."""
    sim = await simulator_factory(
        faults=[Fault("client_error", route="create", status=422)], **QUICK
    )
    jobs, path = jobs_for(sim, 2), tmp_path / "run.journal"
    with Journal.open(path, jobs) as journal:
        journal.intent(jobs[0])  # sent by an earlier run, outcome unknown
    report = await run(sim, jobs, journal=path)
    assert [type(r.error) for r in report.results] == [hr.BadRequestError] * 2
    assert [r.open for r in report.results] == [True, False]
    assert sim.stats.count("list") >= 2  # preflight, then the lookup before the resend
    sim.faults = []
    again = await run(sim, jobs, journal=path)
    assert again.results[0].model is not None and again.results[1].model is None
    assert sim.stats.models_created == 1


async def test_a_failed_lookup_at_resume_leaves_the_job_open(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """A 401 while looking up an earlier run's POST ends the job open; the rerun adopts it."""
    sim = await simulator_factory(**QUICK)
    jobs, path = jobs_for(sim, 2), tmp_path / "run.journal"
    async with client_for(sim) as client:
        with Journal.open(path, jobs) as journal:
            journal.intent(jobs[0])  # sent and stored; the runner died before "created"
            stored = await client.models.create(**as_dict(jobs[0], key=None))
    sim.faults = [Fault("client_error", route="get", status=401, model_id=stored.id)]
    report = await run(sim, jobs, journal=path)
    assert isinstance(report.results[0].error, hr.AuthenticationError)
    assert report.results[0].open and report.results[1].model is not None
    sim.faults = []
    sim.reset_stats()
    again = await run(sim, jobs, journal=path)
    assert again.results[0].model is not None and again.results[0].model.id == stored.id
    assert sim.stats.count("create") == 0 and sim.stats.duplicates == 0


@pytest.mark.parametrize(
    "fault",
    [
        Fault("drop", route="create"),
        Fault("server_error", route="create", status=503),
    ],
    ids=["connection", "5xx"],
)
async def test_transient_failures_are_retried_until_the_deadline(
    simulator_factory: SimulatorFactory, tmp_path: Path, fault: Fault
) -> None:
    """A POST that keeps failing is sent again and again until the deadline, then ends open."""
    sim = await simulator_factory(faults=[fault], **QUICK)
    jobs, path = jobs_for(sim, 2), tmp_path / "run.journal"
    report = await run(sim, jobs, journal=path, deadline=0.5)
    assert all(r.error is not None and r.open for r in report.results)
    assert sim.stats.models_created == 0
    assert sim.stats.count("create") > 2 * 9  # re-queued past the client's 9 attempts
    sim.faults = []
    again = await run(sim, jobs, journal=path)
    assert all(r.model is not None for r in again.results)
    assert sim.stats.duplicates == 0 and sim.stats.models_created == 2


async def test_transient_failures_never_give_a_job_up_while_the_run_lasts(
    simulator_factory: SimulatorFactory,
) -> None:
    """With half the POSTs dropped and no client retries, every job still ends with one model."""
    sim = await simulator_factory(seed=5, faults=[Fault("drop", rate=0.5, route="create")], **QUICK)
    jobs = jobs_for(sim, 12)
    report = await run(sim, jobs, concurrency=4, client={"max_retries": 0})
    assert [r.error for r in report.results] == [None] * 12
    assert sim.stats.faults["drop"] >= 6
    assert sim.stats.models_created == 12 and sim.stats.duplicates == 0


async def test_an_unsettled_create_is_retried_then_adopted(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """Two look-alikes, no field to tell them apart: open at the deadline; adopted later."""
    sim = await simulator_factory(optional_fields="omitted", **QUICK)
    (job,), path = jobs_for(sim, 1), tmp_path / "run.journal"
    async with client_for(sim) as client:
        twin = await client.models.create(**as_dict(job, key=None, train_sample_ids=["other"]))
    sim.faults = [Fault("commit_then_fail", route="create", then=504)]  # ours: stored, then 504
    # the default tolerance: whole-second created_at stamps put the twin in the lookup's window
    policy = hr.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.02, reconcile_delay=0)
    report = await run(sim, [job], journal=path, deadline=0.3, client={"retry_policy": policy})
    (result,) = report.results
    assert isinstance(result.error, hr.AmbiguousCreateError) and result.open
    assert sim.stats.count("create") == 2  # the twin's and ours: never sent again
    sim.optional_fields = "present"
    sim.faults = []
    again = await run(sim, [job], journal=path, client={"retry_policy": policy})
    assert again.results[0].model is not None and again.results[0].model.id != twin.id
    assert sim.stats.models_created == 2 and sim.stats.count("create") == 2
