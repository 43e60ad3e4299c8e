"""The standalone simulator: `python -m happyrobot_async simulate`."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from happyrobot_async.cli import main
from happyrobot_async.cli._simulate import parse_fault
from happyrobot_async.testing import Fault

ROOT = Path(__file__).resolve().parent.parent


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
