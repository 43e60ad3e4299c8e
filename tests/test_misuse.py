"""Careless use gets one clear `HappyRobotError`, before anything is sent where it can be."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import aiohttp
import pytest

import happyrobot_async as hr
from happyrobot_async.testing import Fault, Simulator

SECRET = "sk-live-do-not-print-me"


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (SECRET + "\n", "control character"),
        ("abc\x00def", "control character"),
        ("   ", "only whitespace"),
        (" " + SECRET, "leading or trailing whitespace"),
    ],
)
def test_bad_api_key_is_refused_without_echoing_it(key: str, says: str) -> None:
    """A key that cannot be a header value is refused at construction, never shown."""
    with pytest.raises(hr.InvalidRequestError, match=says) as info:
        hr.HappyRobotClient(key, "http://127.0.0.1:1/api/v1")
    assert info.value.field == "api_key"
    assert SECRET not in str(info.value) and "abc" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://user:pass@example.com/api/v1", "user info"),
        ("http://127.0.0.1:99999/api/v1", "port"),
        ("http://127.0.0.1:0/api/v1", "port"),
        ("https://example.com:abc/api/v1", "port"),
        ("https://example.com/api/v1?x=1", "query"),
    ],
)
def test_bad_base_url_is_refused(url: str, says: str) -> None:
    """A base URL with user info, a bad port or a query is refused at construction."""
    with pytest.raises(hr.InvalidRequestError, match=says) as info:
        hr.HappyRobotClient(SECRET, url)
    assert info.value.field == "base_url"


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", "5"), ("timeout", True), ("connect_timeout", float("inf")), ("rate_limit", "9")],
)
def test_settings_of_the_wrong_type_are_named(option: str, value: object) -> None:
    """A setting of the wrong type is an InvalidRequestError naming it, not a TypeError later."""
    with pytest.raises(hr.InvalidRequestError) as info:
        hr.HappyRobotClient(SECRET, "http://127.0.0.1:1/api/v1", **{option: value})  # type: ignore[arg-type]
    assert info.value.field == option


async def test_model_id_cannot_escape_its_path(simulator: Simulator) -> None:
    """An id with path characters is refused before anything is sent, the key never sent."""
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        with pytest.raises(hr.InvalidRequestError, match="model_id"):
            await client.models.get("x/../../v2/models/abcdef")
    assert simulator.stats.total_requests == 0


async def test_borrowed_session_raising_for_status_still_maps_errors(
    simulator: Simulator,
) -> None:
    """A caller's session made with raise_for_status=True: a 404 is still one NotFoundError."""
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        client = hr.HappyRobotClient(simulator.api_key, simulator.base_url, session=session)
        with pytest.raises(hr.NotFoundError):
            await client.models.get("0" * 24)
    assert simulator.stats.count("get") == 1


async def test_closed_client_refuses_to_send(simulator: Simulator) -> None:
    """After close(), a call raises a HappyRobotError saying so, and sends nothing."""
    client = hr.HappyRobotClient(simulator.api_key, simulator.base_url)
    await client.models.list()
    await client.close()
    assert client.closed
    with pytest.raises(hr.HappyRobotError, match="closed"):
        await client.models.list()
    assert simulator.stats.count("list") == 1


async def test_client_from_a_second_event_loop_is_refused(simulator: Simulator) -> None:
    """A client used from another event loop raises a HappyRobotError, not an aiohttp crash."""
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        await client.models.list()
        errors: list[BaseException] = []

        def elsewhere() -> None:
            try:
                asyncio.run(client.models.list())
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        await asyncio.to_thread(thread.join)
    assert len(errors) == 1 and isinstance(errors[0], hr.HappyRobotError)
    assert "event loop" in str(errors[0])


async def test_oversized_body_is_refused_without_reading_on(simulator: Simulator) -> None:
    """A body over max_response_bytes is a ResponseValidationError, the rest left unread."""
    simulator.faults = [Fault("oversize", route="list", size=5_000_000)]
    async with hr.HappyRobotClient(
        simulator.api_key, simulator.base_url, max_response_bytes=100_000
    ) as client:
        with pytest.raises(hr.ResponseValidationError, match="larger than 100000 bytes"):
            await client.models.list()
        simulator.faults = []
        assert await client.models.list()  # the client is still usable


async def test_forgotten_client_exits_quietly(simulator: Simulator) -> None:
    """A script that forgets close() exits without "Unclosed connector/session" warnings."""
    script = textwrap.dedent(
        f"""
        import asyncio, gc, happyrobot_async as hr
        async def main():
            client = hr.HappyRobotClient({simulator.api_key!r}, {simulator.base_url!r})
            await client.models.list()
        asyncio.run(main())
        gc.collect()
        """
    )
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "default", "-c", script, stderr=subprocess.PIPE
    )
    _, stderr = await done.communicate()
    assert done.returncode == 0
    assert b"Unclosed" not in stderr, stderr.decode()
