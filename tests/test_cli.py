"""The `happyrobot-async` commands, run in-process against a simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import CliSimulator, Run, cli_process, create_argv, make_jobs, wait_until, write_jobs
from test_batch import ghost

from happyrobot_async import cli
from happyrobot_async.testing import Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

CHANGE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<job>\S+) (?P<name>.+) (?P<id>[0-9a-f]{24}) "
    r"(?P<previous>new|pending|training|active|failed) -> (?P<current>\w+)$"
)


async def run_or_unstick(run: Run, sim: Simulator, *argv: str) -> tuple[int, str, str]:
    """`run(*argv)`, which must end on its own within 20 s while `sim`'s clock stands still.

    If it does not, speed the clock up so its models finish and the thread ends, then fail.
    """
    task = asyncio.ensure_future(run(*argv))
    done, _ = await asyncio.wait([task], timeout=20)
    if not done:
        sim.clock.speed = 1000.0
        await task
        pytest.fail(f"`{' '.join(argv)}` did not stop by itself")
    return task.result()


# -- create, get, list, wait ---------------------------------------------------------------


async def test_create_json_prints_the_stored_model(sim: Simulator, run: Run) -> None:
    """`create --json` exits 0 and prints the model the simulator stored, sample ids included."""
    code, out, err = await run(*create_argv(sim), "--no-explain-tools", "--json")
    assert code == 0, err
    model = json.loads(out)
    stored = sim.get_model(model["id"])
    assert model["name"] == stored.name == "Carrier sales v2"
    assert model["train_sample_ids"] == ["a" * 24, "b" * 24]
    assert stored.explain_tools is False
    assert model["status"] == "pending"


async def test_create_and_get_print_text_by_default(sim: Simulator, run: Run) -> None:
    """Without --json, create and get print `label: value` lines a person can read."""
    code, out, _ = await run(*create_argv(sim, "Readable"))
    assert code == 0
    model_id = re.search(r"^id:\s+([0-9a-f]{24})$", out, re.M)
    assert model_id is not None
    assert re.search(r"^name:\s+Readable$", out, re.M)
    code, out, _ = await run("get", model_id[1])
    assert code == 0
    assert re.search(r"^train samples:\s+a{24}, b{24}$", out, re.M)


async def test_get_json_unknown_and_malformed_ids(sim: Simulator, run: Run) -> None:
    """get --json prints one model; an unknown id exits 1, a malformed one 2 (nothing sent)."""
    base = sim.base_model_ids(sim.use_case_ids[0])[0]
    code, out, _ = await run("get", base, "--json")
    assert code == 0
    assert json.loads(out)["id"] == base
    code, out, err = await run("get", "f" * 24)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "NotFoundError" in err
    before = sim.stats.total_requests
    code, _, err = await run("get", "short")
    assert code == 2 and "24 characters" in err
    assert sim.stats.total_requests == before


async def test_list_filters_and_outputs(sim: Simulator, run: Run) -> None:
    """list --json honours the filters; text mode prints a table, or 'No models.'."""
    use_case = sim.use_case_ids[1]
    code, out, _ = await run("list", "--use-case-id", use_case, "--trainable", "--json")
    assert code == 0
    listed = json.loads(out)
    assert {m["id"] for m in listed} == set(sim.base_model_ids(use_case))
    code, out, _ = await run("list", "--use-case-id", use_case, "--not-trainable", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = await run("list", "--status", "failed")
    assert (code, out) == (0, "No models.\n")
    code, out, _ = await run("list", "--use-case-id", use_case, "--status", "active")
    assert code == 0
    header = ["ID", "STATUS", "TRAINABLE", "CREATED", "USE", "CASE", "NAME"]
    assert out.splitlines()[0].split() == header
    assert len(out.splitlines()) == 1 + len(sim.base_model_ids(use_case))


@pytest.mark.parametrize(
    ("failure_rate", "exit_code", "status"), [(0.0, 0, "active"), (1.0, 1, "failed")]
)
async def test_wait_exit_code_follows_the_final_status(
    cli_simulator: CliSimulator, run: Run, failure_rate: float, exit_code: int, status: str
) -> None:
    """wait exits 0 when the model ends active and 1 when it ends failed, printing it either way."""
    sim = await cli_simulator(seed=4, speed=100.0, failure_rate=failure_rate)
    code, out, _ = await run(*create_argv(sim), "--json")
    assert code == 0
    model_id = json.loads(out)["id"]
    code, out, _ = await run("wait", model_id, "--poll-interval", "0.02", "--json")
    assert code == exit_code
    assert json.loads(out)["status"] == status == sim.get_model(model_id).status


async def test_wait_timeout_exits_3(cli_simulator: CliSimulator, run: Run) -> None:
    """wait --timeout gives up with a one-line error and exit 3 when the model is not done."""
    sim = await cli_simulator(seed=5, speed=0.0, url_in_env=False)
    code, out, _ = await run("--base-url", sim.base_url, *create_argv(sim), "--json")
    model_id = json.loads(out)["id"]
    code, out, err = await run(
        "wait", model_id, "--timeout", "0.2", "--poll-interval", "0.05", "--base-url", sim.base_url
    )
    assert (code, out) == (3, "")
    assert "WatchTimeoutError" in err and "pending" in err


async def test_invalid_argument_is_a_usage_error(sim: Simulator, run: Run) -> None:
    """A create the SDK refuses before sending (a short model id) exits 2 and sends nothing."""
    args = create_argv(sim)
    args[args.index("--from-model-id") + 1] = "too-short"
    code, _, err = await run(*args)
    assert code == 2 and "from_model_id" in err
    assert sim.stats.total_requests == 0


# -- --rate-limit --------------------------------------------------------------------------


async def test_rate_limit_paces_a_batch(sim: Simulator, run: Run, tmp_path: Path) -> None:
    """batch --rate-limit 5 spaces its requests: n requests take at least (n - 1) / 5 seconds."""
    path = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 3))
    argv = ["batch", str(path), "--journal", str(tmp_path / "j"), "--concurrency", "3"]
    started = time.monotonic()
    code, _, err = await run(*argv, "--poll-interval", "0.02", "--rate-limit", "5")
    elapsed = time.monotonic() - started
    assert code == 0, err
    requests = sim.stats.total_requests
    assert requests >= 6  # 3 creates, then at least one poll per model
    # The client books one slot every 0.2 s from its first request on, so this bound is
    # exact however slow the machine (unpaced, these requests take a fraction of it).
    assert elapsed >= (requests - 1) / 5 - 0.01


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "--rate-limit", "5"],
        ["--rate-limit", "5", "list"],
        ["--rate-limit", "5", "demo"],
        ["demo", "--rate-limit", "5"],
    ],
)
def test_rate_limit_is_read_before_or_after_the_command(argv: list[str]) -> None:
    """--rate-limit is a global option: accepted on either side of the command, demo included."""
    assert cli._build_parser().parse_args(argv).rate_limit == 5.0
    command = [word for word in argv if word in ("list", "demo")]
    assert cli._build_parser().parse_args(command).rate_limit is None


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "--rate-limit", "0"],
        ["list", "--rate-limit", "x"],
        ["--rate-limit", "-2", "list"],
        ["get", "f" * 24, "--rate-limit", "nan"],
        ["batch", "jobs.jsonl", "--journal", "j", "--rate-limit", "inf"],
    ],
)
def test_bad_rate_limit_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A --rate-limit that is not a positive number is an argparse error: exit 2, one error line."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.splitlines()[-1]]
    assert "argument --rate-limit: " in errors[0]
    assert "Traceback" not in err


# -- the key -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["list"], ["get", "f" * 24], ["wait", "f" * 24], ["create", *("--name", "x")], ["batch"]],
)
async def test_missing_key_exits_2(
    sim: Simulator, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str]
) -> None:
    """With no HAPPYROBOT_API_KEY and no --api-key-file, API commands exit 2 saying so."""
    monkeypatch.delenv("HAPPYROBOT_API_KEY")
    if argv[0] == "create":
        argv = create_argv(sim)
    if argv[0] == "batch":
        jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 2))
        argv = ["batch", str(jobs), "--journal", str(tmp_path / "j")]
    code, out, err = await run(*argv)
    assert (code, out) == (2, "")
    assert "no API key" in err and "HAPPYROBOT_API_KEY" in err
    assert sim.stats.total_requests == 0


async def test_api_key_file(
    sim: Simulator, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--api-key-file supplies the key (before or after the command); empty or missing: exit 2."""
    monkeypatch.delenv("HAPPYROBOT_API_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(sim.api_key + "\n")
    assert (await run("--api-key-file", str(key_file), "list", "--json"))[0] == 0
    assert (await run("list", "--api-key-file", str(key_file), "--json"))[0] == 0
    key_file.write_text("  \n")
    code, _, err = await run("list", "--api-key-file", str(key_file))
    assert code == 2 and "is empty" in err
    code, _, err = await run("list", "--api-key-file", str(tmp_path / "nope"))
    assert code == 2 and "cannot read" in err


async def test_the_key_is_never_printed(
    sim: Simulator, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No output of any command, errors and debug logs included, contains the key."""
    outputs: list[str] = []
    for argv in (
        ["-v", "list", "--json"],
        ["-v", *create_argv(sim), "--json"],
        ["get", "-v", "f" * 24],
        ["list", "--base-url", "http://127.0.0.1:9/api/v1"],
        ["list", "--base-url", "http://example.com/api/v1"],
    ):
        _, out, err = await run(*argv)
        outputs += [out, err]
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 3))
    _, out, err = await run("-v", "batch", str(jobs), "--journal", str(tmp_path / "j"))
    outputs += [out, err, (tmp_path / "j").read_text()]
    wrong = "hr_wrong_key_0123456789"
    monkeypatch.setenv("HAPPYROBOT_API_KEY", wrong)
    code, out, err = await run("-v", "list")
    assert code == 1 and "AuthenticationError" in err
    assert wrong not in out + err
    assert any("GET /models -> 200" in text for text in outputs)  # -v shows debug logs
    for text in outputs:
        assert sim.api_key not in text


# -- batch ---------------------------------------------------------------------------------


async def test_batch_plain_lines_and_results_agree_with_the_simulator(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """Off a terminal, batch prints a line per status change; --out has a row per job, in order."""
    sim = await cli_simulator(seed=8, speed=50.0, failure_rate=0.3, url_in_env=False)
    jobs = make_jobs(sim, 12)
    path, out_path = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "results.jsonl"
    argv = [
        *("batch", str(path), "--journal", str(tmp_path / "run.journal")),
        *("--out", str(out_path), "--concurrency", "4", "--poll-interval", "0.02"),
        *("--base-url", sim.base_url),
    ]
    code, out, _ = await run(*argv)
    results = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [row["index"] for row in results] == list(range(12))
    assert [(row["key"], row["name"]) for row in results] == [(j["key"], j["name"]) for j in jobs]
    for row in results:
        truth = sim.get_model(row["model_id"])
        assert (truth.name, truth.use_case_id) == (row["name"], row["use_case_id"])
        assert row["status"] == truth.status and row["error"] is None
    statuses = {row["status"] for row in results}
    assert statuses <= {"active", "failed"} and "failed" in statuses
    assert code == 1  # some failed
    changes = [m for line in out.splitlines() if (m := CHANGE_LINE.match(line))]
    finals = {m["id"]: m["current"] for m in changes}
    assert finals == {row["model_id"]: row["status"] for row in results}
    assert {m["name"] for m in changes} == {job["name"] for job in jobs}
    assert any(m["previous"] == "new" for m in changes)
    assert "12 job(s)" in out and "failed" in out
    assert sim.stats.models_created == 12 and sim.stats.duplicates == 0


async def test_batch_all_active_exits_0_and_a_rerun_creates_nothing(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """All active → exit 0; rerunning with the same journal resumes: no new model, same results."""
    path = write_jobs(tmp_path / "jobs.json", make_jobs(sim, 6))
    argv = ["batch", str(path), "--journal", str(tmp_path / "j"), "--poll-interval", "0.02"]
    code, _, _ = await run(*argv, "--out", str(tmp_path / "one.jsonl"))
    assert code == 0
    assert sim.stats.models_created == 6
    code, out, err = await run(*argv, "--out", str(tmp_path / "two.jsonl"))
    assert code == 0
    assert "resuming from journal" in err and "6 done" in err
    assert not CHANGE_LINE.search(out)
    assert sim.stats.models_created == 6
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "two.jsonl").read_text()


async def test_batch_reads_a_json_array(sim: Simulator, run: Run, tmp_path: Path) -> None:
    """A jobs file holding a JSON array works like JSONL."""
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(make_jobs(sim, 3), indent=2))
    code, _, _ = await run("batch", str(path), "--journal", str(tmp_path / "j"))
    assert code == 0
    assert sim.stats.models_created == 3


async def test_bad_jobs_file_lists_every_bad_line(sim: Simulator, run: Run, tmp_path: Path) -> None:
    """A bad JSONL jobs file exits 2 listing each bad line by number, and sends nothing."""
    good = make_jobs(sim, 4)
    two_missing = dict(good[2])
    del two_missing["from_model_id"], two_missing["test_sample_ids"]
    lines = [
        json.dumps(good[0]),
        "{not json",
        "",
        json.dumps({**good[1], "name": ""}),
        json.dumps(two_missing),
        json.dumps({**good[3], "name": good[0]["name"], "use_case_id": good[0]["use_case_id"]}),
        json.dumps({**good[1], "train_sample_ids": "abc"}),
        json.dumps(["a list"]),
        json.dumps({**good[2], "colour": "blue"}),
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = await run("batch", str(path), "--journal", str(tmp_path / "j"))
    assert (code, out) == (2, "")
    assert "7 bad job line(s)" in err  # line 5 has two problems, each listed
    numbered = dict(re.findall(r"line (\d+): (.*)", err))
    assert sorted(numbered, key=int) == ["2", "4", "5", "6", "7", "8", "9"]
    assert "not valid JSON" in numbered["2"]
    assert numbered["4"].startswith("name: ")
    assert re.search(r"^ +line 5: from_model_id: ", err, re.M)
    assert re.search(r"^ +line 5: test_sample_ids: ", err, re.M)
    assert numbered["6"].startswith("name: same use case and name as line 1")
    assert "train_sample_ids" in numbered["7"] and "colour" in numbered["9"]
    assert sim.stats.total_requests == 0
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[\n  {"name": "x"},\n  {"name": "y"\n', 4),
        ('[\n  {"a": 1}\n  {"b": 2}\n]', 3),
        ("[\n  1,\n  2\n] x", 4),
        ('[\n\n  {"name": "x"}]', 3),  # parsed, then refused by validate_jobs
        ("[]", 0),
    ],
)
async def test_bad_json_array_jobs_file(
    sim: Simulator, run: Run, tmp_path: Path, text: str, line: int
) -> None:
    """A malformed, invalid or empty JSON-array jobs file exits 2 pointing at the right line."""
    path = tmp_path / "jobs.json"
    path.write_text(text)
    code, _, err = await run("batch", str(path), "--journal", str(tmp_path / "j"))
    assert code == 2
    assert (f"line {line}:" in err) if line else ("holds no jobs" in err)


async def test_batch_usage_errors(sim: Simulator, run: Run, tmp_path: Path) -> None:
    """A missing jobs file or a job changed after it was sent exits 2; so do bad numbers."""
    code, _, err = await run("batch", str(tmp_path / "none"), "--journal", str(tmp_path / "j"))
    assert code == 2 and "cannot read jobs file" in err
    one = write_jobs(tmp_path / "one.jsonl", make_jobs(sim, 2))
    changed = make_jobs(sim, 3)
    changed[0]["train_sample_ids"] = ["d" * 24]
    two = write_jobs(tmp_path / "two.jsonl", changed)
    assert (await run("batch", str(one), "--journal", str(tmp_path / "j")))[0] == 0
    code, _, err = await run("batch", str(two), "--journal", str(tmp_path / "j"))
    assert code == 2 and "changed after their create was sent: k0 (train_sample_ids)" in err
    code, _, err = await run("batch", str(one), "--journal", str(tmp_path / "no" / "j"))
    assert code == 2 and "cannot use journal" in err
    for bad in (["--concurrency", "0"], ["--poll-interval", "-1"], ["--concurrency", "x"]):
        with pytest.raises(SystemExit) as exc:
            await asyncio.to_thread(cli.main, ["batch", str(one), "--journal", "j", *bad])
        assert exc.value.code == 2


async def test_fail_fast_stops_then_a_rerun_finishes(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """--fail-fast exits 1 when one job fails, --out complete in order; a rerun finishes."""
    # nothing ends unless told
    sim = await cli_simulator(seed=9, speed=0.0, failure_rate=0.0, url_in_env=False)
    jobs = make_jobs(sim, 30)
    names = {job["name"] for job in jobs}
    path, out_path = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "results.jsonl"
    argv = [
        *("batch", str(path), "--journal", str(tmp_path / "j"), "--out", str(out_path)),
        *("--concurrency", "2", "--poll-interval", "0.02", "--base-url", sim.base_url),
    ]
    batch = asyncio.ensure_future(run_or_unstick(run, sim, *argv, "--fail-fast"))
    await wait_until(lambda: any(model.name in names for model in sim.models))
    failed = next(model for model in sim.models if model.name in names)
    sim.set_status(failed.id, "failed")
    code, _, err = await batch
    key = next(job["key"] for job in jobs if job["name"] == failed.name)
    assert code == 1 and f"--fail-fast: stopped after job {key} " in err
    assert "29 job(s) unfinished" in err and "rerun to resume" in err
    stopped = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [row["name"] for row in stopped] == [job["name"] for job in jobs]
    assert [row["status"] for row in stopped if row["name"] == failed.name] == ["failed"]
    assert sum((row["error"] or "").startswith("not finished") for row in stopped) == 29
    sim.clock.speed = 100.0
    code, _, err = await run(*argv)
    assert code == 1 and "resuming from journal" in err
    rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert {row["name"]: row["status"] for row in rows} == {
        name: "failed" if name == failed.name else "active" for name in names
    }
    assert sim.stats.models_created == 30 and sim.stats.duplicates == 0


async def test_fail_fast_stops_at_an_error_result(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """--fail-fast also stops at a job that ends in an error, while no other job can end."""
    sim = await cli_simulator(seed=11, speed=0.0, url_in_env=False)
    jobs = make_jobs(sim, 6)
    jobs[3]["from_model_id"] = ghost(sim)  # shown by GET, refused by the create: 422
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    argv = ["batch", str(path), "--journal", str(tmp_path / "j"), "--poll-interval", "0.02"]
    code, out, err = await run_or_unstick(
        run, sim, *argv, "--base-url", sim.base_url, "--fail-fast"
    )
    assert code == 1 and "--fail-fast: stopped after job k3 " in err
    assert "5 job(s) unfinished" in err
    assert re.search(r"^\S+ k3 job-3 - -> error: .*\b422\b.*: from_model_id", out, re.M)


async def test_batch_live_view_ends_with_a_summary_table(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    """--view live runs the rich view and prints the summary table at the end."""
    path = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 5))
    argv = ["batch", str(path), "--journal", str(tmp_path / "j"), "--view", "live"]
    code, out, _ = await run(*argv, "--poll-interval", "0.02")
    assert code == 0
    assert "Batch summary" in out and "5 job(s)" in out and "5/5 finished" in out


async def test_batch_with_an_error_result(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """A job the server refuses ends as an error: a plain line, an `error` in --out, exit 1."""
    sim = await cli_simulator(seed=10, speed=100.0, failure_rate=0.0, url_in_env=False)
    jobs = make_jobs(sim, 3)
    jobs[1]["from_model_id"] = ghost(sim)  # shown by GET, refused by the create: 422
    path, out_path = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "out.jsonl"
    argv = ["batch", str(path), "--journal", str(tmp_path / "j"), "--out", str(out_path)]
    code, out, _ = await run(*argv, "--poll-interval", "0.02", "--base-url", sim.base_url)
    assert code == 1
    rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [row["status"] for row in rows] == ["active", None, "active"]
    assert rows[1]["model_id"] is None and "422" in rows[1]["error"]
    error_line = rf"^\S+ {jobs[1]['key']} {jobs[1]['name']} - -> error: .*\b422\b.*: from_model_id"
    assert re.search(error_line, out, re.M)
    assert re.search(rf"^k1\s+{jobs[1]['name']}\s+-\s+error\s+.*\b422\b", out, re.M)  # summary


async def test_api_commands_never_import_the_simulator(sim: Simulator, tmp_path: Path) -> None:
    """get, list and batch run without importing happyrobot_async.testing; simulate imports it."""
    script = (
        "import json, sys\n"
        "from happyrobot_async.cli import main\n"
        "codes = [main(argv) for argv in json.loads(sys.argv[1])]\n"
        "before = 'happyrobot_async.testing' in sys.modules\n"
        "try:\n"
        "    main(['simulate', '--fault', 'nope:1'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps([codes, before, 'happyrobot_async.testing' in sys.modules]))\n"
    )
    jobs = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 2))
    commands = [
        ["get", sim.base_model_ids(sim.use_case_ids[0])[0], "--json"],
        ["list", "--json"],
        ["batch", str(jobs), "--journal", str(tmp_path / "j"), "--poll-interval", "0.02"],
    ]
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", script, json.dumps(commands)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    codes, before, after = json.loads(out.decode().splitlines()[-1])
    assert codes == [0, 0, 0]
    assert before is False
    assert after is True  # the check can see the module: `simulate` loads it when it runs


# -- demo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["plain", "live"])
async def test_demo_runs_to_its_end(
    run: Run, view: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """demo needs no key, trains its sample batch, prints the summary, the real-API command
    and where its report is."""
    monkeypatch.delenv("HAPPYROBOT_API_KEY", raising=False)
    report = tmp_path / "demo.html"
    code, out, err = await run("demo", "--speed", "50", "--view", view, "--report", str(report))
    assert code == 0, err
    assert report.is_file() and str(report) in out
    assert "20 job(s)" in out
    assert "0 duplicated" in out
    assert "happyrobot-async batch examples/jobs.jsonl --journal run.journal" in out
    if view == "plain":
        assert len([line for line in out.splitlines() if CHANGE_LINE.match(line)]) >= 20


def test_the_example_jobs_file_is_valid() -> None:
    """examples/jobs.jsonl parses and validates as a batch."""
    from happyrobot_async.cli._jobs import load_jobs

    jobs = load_jobs(Path(__file__).resolve().parent.parent / "examples" / "jobs.jsonl")
    assert len(jobs) == 4 and jobs[1].explain_tools is False


async def test_ctrl_c_exits_130_and_a_rerun_resumes(
    simulator_factory: SimulatorFactory, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SIGINT mid-batch exits 130 with the journal saved; the rerun finishes without duplicates."""
    sim = await simulator_factory(seed=12, speed=1.0, failure_rate=0.0)
    path = write_jobs(tmp_path / "jobs.jsonl", make_jobs(sim, 10))
    argv = ["batch", str(path), "--journal", str(tmp_path / "j"), "--poll-interval", "0.05"]
    process = await cli_process(sim, *argv)
    assert process.stdout is not None
    first = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
    assert CHANGE_LINE.match(first.strip())  # running: models are being watched
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 130
    assert "interrupted; journal" in err.decode() and "resume" in err.decode()
    assert sim.api_key not in (first + out.decode() + err.decode())
    created = sim.stats.models_created
    assert 0 < created <= 10
    sim.clock.advance(60)  # every model created so far is done training
    monkeypatch.setenv("HAPPYROBOT_API_KEY", sim.api_key)
    code, _, err_text = await run(*argv, "--base-url", sim.base_url)
    assert code == 0, err_text
    assert "resuming from journal" in err_text
    assert sim.stats.models_created == 10 and sim.stats.duplicates == 0
