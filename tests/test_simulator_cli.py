"""The standalone simulator: `python -m happyrobot_async simulate`."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp
import pytest

from happyrobot_async import HappyRobotClient
from happyrobot_async.cli import _simulate, main
from happyrobot_async.cli._faultspec import parse_fault
from happyrobot_async.testing import Fault
from happyrobot_async.testing._clock import TIMESTAMP_FORMATS
from happyrobot_async.testing._faults import FAULT_KINDS, ROUTES

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "65a1f0c2e4b0a1b2c3d4e5f6"


def ipv6_loopback() -> bool:
    """Whether this machine can listen on ::1."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@asynccontextmanager
async def simulate(*options: str, stderr: list[str] | None = None) -> AsyncIterator[dict[str, str]]:
    """Run `simulate --port 0 *options` as a subprocess; yield its startup lines as a dict.

    With `stderr`, what the process wrote there is appended to it once it has exited.
    """
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "simulate", "--port", "0", *options),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr is not None else None,
    )
    try:
        assert process.stdout is not None
        lines: dict[str, str] = {}
        while "stats_url" not in lines:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            assert line, "simulate exited before printing its startup lines"
            key, value = line.decode().strip().split(": ", 1)
            lines[key] = value
        yield lines
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=10)
        assert process.returncode == 0
        if stderr is not None:
            stderr.append(err.decode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def get_models(lines: dict[str, str], key: str) -> tuple[int, str | None, object]:
    """GET /models from a `simulate` subprocess with `key`: status, Date header, JSON body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{lines['base_url']}/models", headers={"authorization": f"Bearer {key}"}
        ) as response,
    ):
        return response.status, response.headers.get("Date"), await response.json()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_simulate_command_serves_until_signalled(signum: signal.Signals) -> None:
    """The command prints its base URL and key, answers requests, and exits 0 on a signal."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", "simulate", "--port", "0", "--seed", "5"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = {}
        for _ in range(6):
            key, value = (await process.stdout.readline()).decode().strip().split(": ", 1)
            lines[key] = value
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{lines['base_url']}/models",
                headers={"authorization": f"Bearer {lines['api_key']}"},
            ) as response,
        ):
            assert response.status == 200
            models = await response.json()
        assert {m["id"] for m in models} == set(lines["base_model_ids"].split(","))
        assert lines["base_url"].startswith("http://127.0.0.1:")
        assert not lines["base_url"].endswith(":0/api/v1")
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("drop:0.2", Fault("drop", 0.2)),
        ("latency:1:get:delay=0.3", Fault("latency", 1.0, "get", delay=0.3)),
        ("commit_then_fail:0.1:then=504", Fault("commit_then_fail", 0.1, then=504)),
        (
            "server_error:0.5:status=503:html=true",
            Fault("server_error", 0.5, status=503, html=True),
        ),
        ("rate_limit:1:list:retry_after=2.5", Fault("rate_limit", 1.0, "list", retry_after=2.5)),
        (
            "redirect:1:location=http://127.0.0.2:9/x",
            Fault("redirect", 1.0, location="http://127.0.0.2:9/x"),
        ),
        ("hang:1:get", Fault("hang", 1.0, "get")),
        (f"hang:1:model_id={MODEL_ID}", Fault("hang", 1.0, model_id=MODEL_ID)),
        ("client_error:0.1:get:status=403", Fault("client_error", 0.1, "get", status=403)),
        ("oversize:1:list:size=5000000", Fault("oversize", 1.0, "list", size=5_000_000)),
        ("client_error", Fault("client_error", 1.0, status=400)),
    ],
)
def test_parse_fault(text: str, fault: Fault) -> None:
    """--fault KIND:RATE[:ROUTE][:K=V...] builds the matching Fault, URLs included."""
    assert parse_fault(text) == fault


@pytest.mark.parametrize("text", ["nope:1", "drop:x", "drop:1:sideways", "drop:2"])
def test_bad_fault_option_exits_with_usage_error(text: str) -> None:
    """A malformed --fault is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--fault", text])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("nope:1", FAULT_KINDS),
        ("hangs:1:get", FAULT_KINDS),
        ("hang:1:sideways", ROUTES),
        ("oversize:1:lists:size=10", ROUTES),
    ],
)
def test_unknown_fault_kind_or_route_is_one_line_naming_the_valid_values(
    capsys: pytest.CaptureFixture[str], text: str, valid: tuple[str, ...]
) -> None:
    """An unknown kind or route exits 2 with one error line that lists every valid value."""
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--fault", text])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.splitlines()[-1]]
    assert f"bad fault {text!r}" in errors[0]
    assert all(value in errors[0] for value in valid)
    assert "Traceback" not in err and "Attribute(" not in err


def test_simulate_help_lists_the_simulators_fault_kinds_and_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`simulate --help` names every fault kind, route and timestamp format the simulator has."""
    assert _simulate.TIMESTAMP_FORMATS == TIMESTAMP_FORMATS
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"fault kinds: {', '.join(FAULT_KINDS)}" in out
    assert f"fault routes: {', '.join(ROUTES)}" in out
    assert "{" + ",".join(TIMESTAMP_FORMATS) + "}" in out


def test_a_busy_port_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """simulate on a port already listening exits 2 with a single error line and no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["simulate", "--port", str(port)])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"happyrobot-async: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(pick another --port, or --port 0 for a free one)"
    ]


async def test_clock_offset_and_timestamp_format_shape_the_responses() -> None:
    """--clock-offset -120 puts the Date header and created_at 120 s behind, spelled as asked."""
    started = time.time()
    async with simulate("--clock-offset", "-120", "--timestamp-format", "+00:00") as lines:
        before = time.time()
        status, date, models = await get_models(lines, lines["api_key"])
        after = time.time()
    assert status == 200 and date is not None and isinstance(models, list)
    server_now = parsedate_to_datetime(date).timestamp()  # whole seconds
    assert before - 121 <= server_now <= after - 119
    for model in models:
        assert model["created_at"].endswith("+00:00")
        created = datetime.fromisoformat(model["created_at"]).timestamp()
        assert started - 121 <= created <= before - 119  # seeded when the simulator started


async def test_forbidden_key_gets_403_and_the_normal_key_still_works() -> None:
    """--forbidden-key prints forbidden_api_key right after api_key; that key gets 403."""
    async with simulate("--forbidden-key", "--seed", "2") as lines:
        assert list(lines)[:3] == ["base_url", "api_key", "forbidden_api_key"]
        assert lines["forbidden_api_key"] != lines["api_key"]
        status, _, _ = await get_models(lines, lines["forbidden_api_key"])
        assert status == 403
        status, _, models = await get_models(lines, lines["api_key"])
        assert status == 200 and models


@pytest.mark.parametrize(
    ("host", "origin"), [("0.0.0.0", "http://127.0.0.1:"), ("::", "http://[::1]:")]
)
async def test_all_interfaces_host_prints_a_url_the_client_accepts(host: str, origin: str) -> None:
    """--host 0.0.0.0 (or ::) prints a loopback base_url the client uses, and says so on stderr."""
    if ":" in host and not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    stderr: list[str] = []
    async with simulate("--host", host, "--seed", "3", stderr=stderr) as lines:
        assert lines["base_url"].startswith(origin) and lines["base_url"].endswith("/api/v1")
        assert lines["stats_url"].startswith(origin)
        async with HappyRobotClient(api_key=lines["api_key"], base_url=lines["base_url"]) as client:
            models = await client.models.list()
        assert {m.id for m in models} == set(lines["base_model_ids"].split(","))
    assert "listening on all interfaces" in stderr[0]
