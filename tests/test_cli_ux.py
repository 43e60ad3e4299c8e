"""The command line explains itself: version, options, log formats, `wait`, ids and job names."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from conftest import CliSimulator, Run, create_argv, wait_until

import happyrobot_async as hr
from happyrobot_async import (
    BatchProgress,
    BatchReport,
    BatchResult,
    JobProgress,
    JobStage,
    __version__,
    cli,
)
from happyrobot_async._logging import FIELDS
from happyrobot_async.cli._common import forget_secrets, logging_to_stderr, remember_secret
from happyrobot_async.cli._view import PlainLines, _render, print_summary
from happyrobot_async.errors import HappyRobotError
from happyrobot_async.testing import Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory
from happyrobot_async.types import Model, ModelStatus, StatusChange, TrainingJob

SECRET = "hr_live_s3cr3t_do_not_print_0123456789"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def exits(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[object, str, str]:
    """Run `cli.main(argv)` expecting argparse to exit; its code, stdout and stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def model(model_id: str, name: str, use_case_id: str, status: str = "training") -> Model:
    """A model as the API would return it."""
    when = datetime(2025, 1, 2, tzinfo=UTC)
    return Model(model_id, when, ModelStatus(status), name, use_case_id=use_case_id)


def job(name: str, use_case_id: str, key: str | None) -> TrainingJob:
    """A valid training job."""
    return TrainingJob(
        use_case_id=use_case_id,
        name=name,
        from_model_id="0" * 24,
        train_sample_ids=["a" * 24],
        test_sample_ids=["b" * 24],
        key=key,
    )


# -- --version, --api-key, prefix matching ---------------------------------------------------


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints `happyrobot-async <version>` on stdout and exits 0, also as a process."""
    assert exits(capsys, ["--version"])[:2] == (0, f"happyrobot-async {__version__}\n")
    done = subprocess.run(
        [sys.executable, "-m", "happyrobot_async", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"happyrobot-async {__version__}\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["--api-key", SECRET, "list"],
        ["list", "--api-key", SECRET],
        ["list", f"--api-key={SECRET}"],
        ["get", "f" * 24, "--api-key", SECRET],
        ["demo", "--api-key", SECRET],
        ["simulate", "--api-key", SECRET],
    ],
)
def test_api_key_argument_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """--api-key KEY exits 2 pointing at --api-key-file and the env var, and never prints KEY."""
    code, out, err = exits(capsys, argv)
    assert code == 2
    assert SECRET not in out + err
    assert "--api-key is not accepted" in err
    assert "--api-key-file" in err and "HAPPYROBOT_API_KEY" in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--apikey", SECRET, "list"], None),
        (["list", "--api", SECRET], "--api"),
        (["list", f"--token={SECRET}"], "--token"),
    ],
)
def test_unknown_option_values_are_not_echoed(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: str | None
) -> None:
    """An option no parser knows is named in the error, but the value given to it is hidden."""
    code, out, err = exits(capsys, argv)
    assert code == 2
    assert SECRET not in out + err
    assert named is None or f"unrecognized arguments: {named}" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "--use-case", "x"],
        ["--base", "http://127.0.0.1:9/api/v1", "list"],
        ["wait", "f" * 24, "--time", "1"],
        ["simulate", "--fail", "0.5"],
    ],
)
def test_options_are_never_prefix_matched(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """An abbreviated option is an error, not the longer option it starts (on every parser)."""
    code, _, err = exits(capsys, argv)
    assert code == 2 and "error:" in err and "Traceback" not in err
    parser = cli._build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert parser.allow_abbrev is False
    assert all(sub.allow_abbrev is False for sub in subparsers.choices.values())


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-format", "json", "list"],
        ["list", "--log-format", "json"],
        ["--log-format", "json", "demo"],
        ["demo", "--log-format", "json"],
        ["simulate", "--log-format", "json"],
    ],
)
def test_log_format_is_read_before_or_after_the_command(argv: list[str]) -> None:
    """--log-format is a global option: accepted on either side of the command; text by default."""
    assert cli._build_parser().parse_args(argv).log_format == "json"
    command = [word for word in argv if word in ("list", "demo", "simulate")]
    assert cli._build_parser().parse_args(command).log_format == "text"


# -- --organization-id -----------------------------------------------------------------------


async def test_organization_id_from_the_option_or_the_environment(
    sim: Simulator, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id is sent as the organization: the key's own works, another's 403; the option wins."""
    code, out, err = await run("list", "--organization-id", sim.organization_id, "--json")
    assert code == 0, err and json.loads(out)
    code, _, err = await run("--organization-id", "org_someone_else", "list")
    assert code == 1 and "403" in err and "organization" in err
    monkeypatch.setenv("HAPPYROBOT_ORGANIZATION_ID", "org_someone_else")
    code, _, err = await run("list")
    assert code == 1 and "403" in err
    code, _, err = await run("list", "--organization-id", sim.organization_id)
    assert code == 0, err


# -- logs ------------------------------------------------------------------------------------


async def test_json_logs_are_one_object_per_line_without_the_key(sim: Simulator, run: Run) -> None:
    """-v --log-format json: every stderr line is a JSON object with the request's fields."""
    code, out, err = await run("-v", "--log-format", "json", "list", "--json")
    assert code == 0 and json.loads(out)
    records = [json.loads(line) for line in err.splitlines()]
    assert records
    request = next(r for r in records if r.get("path") == "/models")
    assert {"time", "level", "logger", "message"} <= request.keys()
    assert request["level"] == "DEBUG" and request["logger"] == "happyrobot_async"
    assert (request["method"], request["status"], request["attempt"]) == ("GET", 200, 1)
    assert isinstance(request["elapsed"], float)
    assert datetime.fromisoformat(request["time"]).tzinfo is not None
    assert sim.api_key not in err


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_lines_carry_every_field_and_hide_secrets(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    """A record's structured fields reach the line (job key and use case too); secrets never do."""
    fields = {name: f"{name}-value" for name in FIELDS} | {"status": 503, "attempt": 2}
    fields["path"] = f"/models?key={SECRET}"
    logger = logging.getLogger("happyrobot_async")
    remember_secret(SECRET)
    try:
        with logging_to_stderr(False, log_format):
            logger.warning("create 'Same name' failed (key %s)", SECRET, extra=fields)
            logger.debug("not shown without -v")
    finally:
        forget_secrets()
    err = capsys.readouterr().err
    assert SECRET not in err and "<hidden>" in err
    assert len(err.splitlines()) == 1
    if log_format == "json":
        record = json.loads(err)
        assert record["message"] == "create 'Same name' failed (key <hidden>)"
        assert record["level"] == "WARNING"
        assert {name: record[name] for name in FIELDS} == fields | {"path": "/models?key=<hidden>"}
    else:
        assert err.rstrip().endswith(
            "[job_key=job_key-value use_case_id=use_case_id-value model_id=model_id-value]"
        )


def test_the_cli_handler_replaces_happyrobot_log_s_own(capsys: pytest.CaptureFixture[str]) -> None:
    """With HAPPYROBOT_LOG's stderr handler installed, a record is still one line, in JSON."""
    logger = logging.getLogger("happyrobot_async")
    env_handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(env_handler)
    try:
        with logging_to_stderr(False, "json"):
            logger.warning("once")
        assert env_handler in logger.handlers
    finally:
        logger.removeHandler(env_handler)
    err = capsys.readouterr().err
    assert [json.loads(line)["message"] for line in err.splitlines()] == ["once"]


# -- wait ------------------------------------------------------------------------------------


async def test_wait_prints_each_status_change_on_stderr(
    cli_simulator: CliSimulator, run: Run
) -> None:
    """wait shows new -> pending -> training -> active on stderr as they happen, then exits 0."""
    sim = await cli_simulator(seed=4, speed=0.0, failure_rate=0.0)
    code, out, _ = await run(*create_argv(sim), "--json")
    model_id = json.loads(out)["id"]
    waiting = asyncio.ensure_future(run("wait", model_id, "--poll-interval", "0.02", "--json"))
    for status in ("training", "active"):
        # two more requests: the answer to the first was read before the second was sent
        seen = sim.stats.total_requests
        await wait_until(lambda seen=seen: sim.stats.total_requests >= seen + 2)
        sim.set_status(model_id, status)
    code, out, err = await asyncio.wait_for(waiting, timeout=30)
    assert code == 0 and json.loads(out)["status"] == "active"
    use_case = sim.use_case_ids[0]
    changes = re.findall(
        rf"^{STAMP} {use_case} Carrier sales v2 {model_id} (\w+) -> (\w+)$", err, re.M
    )
    assert changes == [("new", "pending"), ("pending", "training"), ("training", "active")]


async def test_wait_timeout_has_its_own_exit_code(cli_simulator: CliSimulator, run: Run) -> None:
    """wait --timeout exits 3 (not 1, a failed training) with one error line; stdout stays empty."""
    sim = await cli_simulator(seed=5, speed=0.0)
    _, out, _ = await run(*create_argv(sim), "--json")
    model_id = json.loads(out)["id"]
    code, out, err = await run("wait", model_id, "--timeout", "0.2", "--poll-interval", "0.05")
    assert (code, out) == (3, "")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "WatchTimeoutError" in errors[0] and "--timeout" in errors[0]
    assert "(last: pending)" in errors[0]
    assert re.search(rf"^{STAMP} \S+ Carrier sales v2 {model_id} new -> pending$", err, re.M)


def test_wait_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`wait --help` lists exit codes 0, 1, 2, 3 and 130 with what each means."""
    code, out, _ = exits(capsys, ["wait", "--help"])
    assert code == 0
    codes = dict(re.findall(r"^  (\d+)\s+(.+)$", out, re.M))
    assert list(codes) == ["0", "1", "2", "3", "130"]
    assert "active" in codes["0"] and "failed" in codes["1"] and "--timeout" in codes["3"]


def test_every_command_has_a_summary_line_and_a_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each command has a line in `--help`'s list, and a description under its own `--help`."""
    code, out, _ = exits(capsys, ["--help"])
    assert code == 0
    listed = dict(re.findall(r"^    (\w+)\s{2,}(\S.*)$", out, re.M))
    commands = ["create", "get", "list", "wait", "batch", "status", "report", "demo", "simulate"]
    assert sorted(listed) == sorted(commands)
    assert listed["batch"] == "Create and train every job of a jobs file."
    for name in commands:
        code, own, _ = exits(capsys, [name, "--help"])
        description = own.split("\n\n")[1]
        assert code == 0 and description.strip(), name
    assert "JOBS is a JSONL file" in exits(capsys, ["batch", "--help"])[1]


async def test_output_its_reader_stops_reading_ends_quietly(
    simulator_factory: SimulatorFactory,
) -> None:
    """`list | head -1`: the command stops at the closed pipe with 141 and no traceback."""
    sim = await simulator_factory(use_cases=1500)  # a table far larger than a pipe holds
    read_end, write_end = os.pipe()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "list", "--base-url", sim.base_url),
        env={**os.environ, "HAPPYROBOT_API_KEY": sim.api_key},
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = await asyncio.to_thread(reader.readline)
    _, err = await process.communicate()
    assert first.split()[:2] == [b"ID", b"STATUS"]
    assert (process.returncode, err.decode()) == (141, "")


# -- names with their job or use case, ids whole ---------------------------------------------


async def test_list_shows_the_use_case_of_each_model(sim: Simulator, run: Run) -> None:
    """list's table has a USE CASE column holding each model's use case."""
    code, out, _ = await run("list", "--trainable")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "STATUS", "TRAINABLE", "CREATED", "USE", "CASE", "NAME"]
    use_case_of = {m: uc for uc in sim.use_case_ids for m in sim.base_model_ids(uc)}
    assert len(rows) == len(use_case_of)
    start = header.index("USE CASE")
    for row in rows:
        assert row[start:].split()[0] == use_case_of[row.split()[0]]


def test_plain_lines_name_the_job_key_or_the_use_case() -> None:
    """Two jobs of the same name: each change line names the key, else the use case, then name."""
    keyed, bare = job("Carrier sales", "uc_east", "k1"), job("Carrier sales", "uc_west", None)
    progress = BatchProgress([JobProgress(keyed), JobProgress(bare), JobProgress(keyed)])
    progress.jobs[0].model_id, progress.jobs[1].model_id = "1" * 24, "2" * 24
    progress.jobs[2].stage, progress.jobs[2].error = JobStage.ERROR, "422: no such base model"
    out = io.StringIO()
    lines = PlainLines(progress, out)
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    for row in progress.jobs[:2]:
        assert row.model_id is not None
        found = model(row.model_id, "Carrier sales", row.job.use_case_id, "pending")
        lines.on_change(StatusChange(found, None, ModelStatus.PENDING, when))
    lines.on_result(BatchResult(2, keyed, None, None, None, finished_at=when))
    assert out.getvalue().splitlines() == [
        f"2025-01-02T03:04:05Z k1 Carrier sales {'1' * 24} new -> pending",
        f"2025-01-02T03:04:05Z uc_west Carrier sales {'2' * 24} new -> pending",
        "2025-01-02T03:04:05Z k1 Carrier sales - -> error: 422: no such base model",
    ]


def running_batch() -> BatchProgress:
    """Three running jobs with long keys and names, and 24-character model ids."""
    progress = BatchProgress()
    for number in range(3):
        name = f"Appointment scheduling agent, Spanish, concise variant number {number}"
        row = JobProgress(job(name, f"use_case_{number:018d}", f"customer-onboarding-{number:04d}"))
        row.stage, row.model_id, row.model_status = (
            JobStage.WATCHING,
            f"{number:x}" * 24,
            "training",
        )
        row.started = 0.0
        progress.jobs.append(row)
    return progress


@pytest.mark.parametrize("width", [80, 60])
def test_live_rows_keep_ids_whole_on_a_narrow_terminal(width: int) -> None:
    """The live view at 80 (or 60) columns shows each full model id on one line; names give way."""
    from rich.console import Console

    progress = running_batch()
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(_render(progress, 0.0, "batch", 10))
    text = console.export_text()
    for row in progress.jobs:
        assert row.model_id is not None
        assert sum(row.model_id in line for line in text.splitlines()) == 1
        key = row.job.key
        assert key is not None
        shown = key[: width // 16]  # what is left of the key when the names give way
        assert any(line.startswith(shown) and row.model_id in line for line in text.splitlines())
    assert "…" in text  # the names were cut, not the ids
    assert max(len(line) for line in text.splitlines()) <= width


def test_rich_summary_keeps_ids_whole_on_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary's failures table at 80 columns shows each failed model's id on one line."""
    monkeypatch.setenv("COLUMNS", "80")
    results = []
    for index, row in enumerate(running_batch().jobs):
        assert row.model_id is not None
        failed = model(row.model_id, row.job.name, row.job.use_case_id, "failed")
        error = None if index else HappyRobotError("a long explanation " * 5)
        results.append(BatchResult(index, row.job, failed, ModelStatus.FAILED, error))
    print_summary(BatchReport(tuple(results)), 12.5, rich=True)
    lines = capsys.readouterr().out.splitlines()
    for result in results:
        assert result.model is not None
        assert sum(result.model.id in line for line in lines) == 1
    assert max(len(line) for line in lines) <= 80


async def test_live_progress_renders_a_python_batch(
    simulator_factory: SimulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """live_progress shows a run_batch's jobs and counts to a Python user, as the CLI does."""
    from happyrobot_async.cli import live_progress

    sim = await simulator_factory(speed=1000.0)
    use_case_id = sim.use_case_ids[0]
    jobs = [
        hr.TrainingJob(
            use_case_id=use_case_id,
            name=f"py-{i}",
            from_model_id=sim.base_model_ids(use_case_id)[0],
            train_sample_ids=["a"],
            test_sample_ids=["b"],
        )
        for i in range(3)
    ]
    progress = hr.BatchProgress()
    async with hr.HappyRobotClient(sim.api_key, sim.base_url) as client:
        with live_progress(progress, title="python batch"):
            report = await hr.run_batch(
                client, jobs, progress=progress, poll_interval=0.01, max_poll_interval=0.02
            )
    out = capsys.readouterr().out
    assert "python batch" in out and "3/3 finished" in out
    assert len(report.results) == 3
