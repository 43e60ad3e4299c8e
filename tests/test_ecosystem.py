"""What users of other Python SDKs expect: quiet logs, per-call options, raw responses, reprs."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest
from conftest import FAST, client_for, create_args

import happyrobot_async as hr
from happyrobot_async import RawResponse, _logging
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory


async def _stderr_of(script: str, **env: str) -> str:
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stderr=subprocess.PIPE, env={"PATH": "/usr/bin", **env}
    )
    _, stderr = await done.communicate()
    assert done.returncode == 0, stderr.decode()
    return stderr.decode()


async def test_library_logs_nothing_unless_asked() -> None:
    """With no logging configured, even a warning of ours reaches no stderr."""
    script = "import happyrobot_async._logging as l; l.log.warning('quiet please')"
    assert "quiet please" not in await _stderr_of(script)


async def test_happyrobot_log_turns_on_a_stderr_handler() -> None:
    """HAPPYROBOT_LOG=debug shows debug lines on stderr, with level and logger name."""
    script = "import happyrobot_async._logging as l; l.log.debug('hello there')"
    stderr = await _stderr_of(script, HAPPYROBOT_LOG="debug")
    assert "DEBUG happyrobot_async: hello there" in stderr


async def test_records_carry_structured_fields(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request's record carries method, path, status, attempt and elapsed as fields."""
    caplog.set_level(logging.DEBUG, logger="happyrobot_async")
    async with client_for(simulator) as client:
        await client.models.list(use_case_id=simulator.use_case_ids[0])
    record = next(r for r in caplog.records if getattr(r, "path", None) == "/models")
    assert (record.method, record.status, record.attempt) == ("GET", 200, 1)  # type: ignore[attr-defined]
    assert record.elapsed >= 0  # type: ignore[attr-defined]
    assert set(_logging.FIELDS) >= {"method", "path", "status", "job_key"}


async def test_a_resent_create_is_logged_by_its_name_and_use_case(
    simulator_factory: SimulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A create sent again says which create (its name) and carries its use case as a field."""
    caplog.set_level(logging.INFO, logger="happyrobot_async")
    sim = await simulator_factory(
        faults=[Fault("server_error", rate=1.0, route="create", status=503, retry_after=None)]
    )
    async with client_for(sim, max_retries=1) as client:
        with pytest.raises(hr.AmbiguousCreateError):
            await client.models.create(**create_args(sim, "logged-create"))
    resent = [r for r in caplog.records if "no model was stored; sending again" in r.getMessage()]
    assert resent and resent[0].getMessage().startswith("create 'logged-create'")
    assert resent[0].use_case_id == sim.use_case_ids[0]  # type: ignore[attr-defined]
    assert (resent[0].method, resent[0].path) == ("POST", "/models")  # type: ignore[attr-defined]


async def test_no_warning_for_an_error_that_is_raised(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A create refused for good raises; nothing of it is logged as a warning."""
    simulator.faults = [Fault("client_error", route="create", status=422)]
    async with client_for(simulator) as client:
        with pytest.raises(hr.BadRequestError):
            await client.models.create(**create_args(simulator, "refused"))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_with_options_shares_the_pool_and_overrides_options(
    simulator_factory: SimulatorFactory,
) -> None:
    """with_options gives a client with its own retries and timeout over the same session."""
    sim = await simulator_factory(faults=[Fault("server_error", route="list", status=500)])
    async with client_for(sim) as client:
        patient = client.with_options(max_retries=1, timeout=5.0)
        assert patient._transport is client._transport
        assert patient.retry_budget is client.retry_budget
        with pytest.raises(hr.ServerError):
            await patient.models.list()
        assert sim.stats.count("list") == 2  # 1 retry, not the original client's 4
        assert client.retry_policy.max_retries == FAST.max_retries


async def test_per_call_timeout(simulator_factory: SimulatorFactory) -> None:
    """timeout= on one call limits that call's attempts, not the client's other calls."""
    sim = await simulator_factory(faults=[Fault("latency", route="get", delay=0.5)])
    model_id = sim.base_model_ids(sim.use_case_ids[0])[0]
    async with client_for(sim, max_retries=0, retry_policy=None) as client:
        with pytest.raises(hr.APITimeoutError):
            await client.models.get(model_id, timeout=0.05)
        assert (await client.models.get(model_id)).id == model_id


async def test_raw_response_gives_status_headers_and_the_value(simulator: Simulator) -> None:
    """with_raw_response answers status, headers, elapsed and request id; parse() the value."""
    model_id = simulator.base_model_ids(simulator.use_case_ids[0])[0]
    async with client_for(simulator) as client:
        raw = await client.models.with_raw_response.get(model_id)
        listed = await client.models.with_raw_response.list(use_case_id=simulator.use_case_ids[0])
        created = await client.models.with_raw_response.create(**create_args(simulator, "raw"))
    assert raw.status == 200 and raw.parse().id == model_id
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.elapsed > 0 and "Date" in raw.headers
    assert model_id in {m.id for m in listed.parse()}
    assert created.status == 200 and created.parse().name == "raw"


async def test_each_raw_call_answers_its_own_response(simulator: Simulator) -> None:
    """Raw calls side by side with plain ones each get the response of their own request."""
    async with client_for(simulator) as client:
        made = [await client.models.create(**create_args(simulator, "m" * n)) for n in (1, 9, 40)]
        ids = [model.id for model in made]  # names of other lengths: bodies of other lengths
        plain = [client.models.get(model_id) for model_id in ids]
        raw = [client.models.with_raw_response.get(model_id) for model_id in ids]
        answers = await asyncio.gather(*plain, *raw)
        alone = [await client.models.with_raw_response.get(model_id) for model_id in ids]
    lengths = {answer.headers["content-length"] for answer in alone}
    assert len(lengths) == len(ids)
    for model_id, together, single in zip(ids, answers[len(ids) :], alone, strict=True):
        assert isinstance(together, RawResponse) and together.parse().id == model_id
        assert together.headers["content-length"] == single.headers["content-length"]


async def test_a_raw_create_settled_by_reconciling_answers_the_finding_get(
    simulator_factory: SimulatorFactory,
) -> None:
    """A create stored but answered 500 is found by a lookup: its raw response is that GET's."""
    sim = await simulator_factory(
        faults=[Fault("commit_then_fail", rate=1.0, route="create", then=500)]
    )
    async with client_for(sim) as client:
        raw = await client.models.with_raw_response.create(**create_args(sim, "found-again"))
        model = raw.parse()
        again = await client.models.with_raw_response.get(model.id)
    assert raw.status == 200 and model.name == "found-again"
    assert sim.stats.count("create") == 1  # found, not sent again
    assert raw.headers["content-length"] == again.headers["content-length"]


async def test_reprs_say_what_a_person_needs(simulator_factory: SimulatorFactory) -> None:
    """Model, BatchReport and Simulator reprs are short and say what they hold."""
    simulator = await simulator_factory(speed=1000.0)
    assert repr(simulator).startswith("Simulator(http://127.0.0.1:")
    assert repr(simulator).endswith(f"models={len(simulator.models)})")
    async with client_for(simulator) as client:
        model = (await client.models.list())[0]
        jobs = [hr.TrainingJob(**create_args(simulator, f"r{i}")) for i in range(2)]
        report = await hr.run_batch(client, jobs, poll_interval=0.01, max_poll_interval=0.02)
    assert repr(model) == f"Model(id={model.id!r}, name={model.name!r}, status='active')"
    assert repr(report).startswith("BatchReport(2 jobs: ")
    assert repr(hr.BatchReport(())) == "BatchReport(0 jobs: none)"
    async with client_for(simulator) as client:
        watcher = client.watcher()
        assert repr(watcher) == "<TrainingWatcher new, 0 models tracked>"
        async with watcher:
            watcher.track(model.id)
            assert repr(watcher) == "<TrainingWatcher running, 1 models tracked>"
        assert repr(watcher) == "<TrainingWatcher closed, 0 models tracked>"
