"""The client against the simulator over real HTTP: round trips, errors, validation, config."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import happyrobot_async as hr
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

SAMPLES = {"train_sample_ids": ["s1", "s2"], "test_sample_ids": ["s3"]}


def job(sim: Simulator, name: str = "agent", use_case: int = 0) -> dict[str, Any]:
    use_case_id = sim.use_case_ids[use_case]
    return {
        "use_case_id": use_case_id,
        "name": name,
        "from_model_id": sim.base_model_ids(use_case_id)[0],
        **SAMPLES,
    }


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[hr.HappyRobotClient]:
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as c:
        yield c


async def test_create_get_list_round_trip(
    simulator: Simulator, client: hr.HappyRobotClient
) -> None:
    """create returns the stored model; get and list return it again, list without sample ids."""
    created = await client.models.create(**job(simulator))
    assert created.status is hr.ModelStatus.PENDING
    assert created.train_sample_ids == ("s1", "s2")
    assert created.organization_id == simulator.organization_id
    fetched = await client.models.get(created.id)
    assert (fetched.id, fetched.name, fetched.test_sample_ids) == (created.id, "agent", ("s3",))
    listed = await client.models.list(use_case_id=simulator.use_case_ids[0])
    mine = [m for m in listed if m.id == created.id]
    assert len(mine) == 1 and mine[0].train_sample_ids is None
    assert all(m.use_case_id == simulator.use_case_ids[0] for m in listed)


async def test_list_filters(simulator: Simulator, client: hr.HappyRobotClient) -> None:
    """status and trainable filters reach the server and narrow the list."""
    created = await client.models.create(**job(simulator))
    trainable = await client.models.list(trainable=True)
    assert trainable and all(m.trainable for m in trainable)
    pending = await client.models.list(status=hr.ModelStatus.PENDING)
    assert [m.id for m in pending] == [created.id]
    assert await client.models.list(status="failed") == []


async def test_unknown_status_survives(simulator: Simulator, client: hr.HappyRobotClient) -> None:
    """A status outside the contract arrives as UNKNOWN with the server's string kept."""
    created = await client.models.create(**job(simulator))
    simulator.set_status(created.id, "queued")
    model = await client.models.get(created.id)
    assert (model.status, model.raw_status) == (hr.ModelStatus.UNKNOWN, "queued")


@pytest.mark.parametrize("optional_fields", ["omitted", "null"])
async def test_response_variants(simulator_factory: SimulatorFactory, optional_fields: str) -> None:
    """Newer extra fields are read; omitted or null optional fields default."""
    sim = await simulator_factory(extra_fields=True, optional_fields=optional_fields)
    async with hr.HappyRobotClient(sim.api_key, sim.base_url) as client:
        created = await client.models.create(**job(sim))
        model = await client.models.get(created.id)
        listed = await client.models.list()
    assert model.provider is not None and model.explain_tools is not None
    assert model.organization_id is None
    assert model.id == created.id and listed


async def test_error_classes_from_real_responses(simulator: Simulator) -> None:
    """401, 403, 404 and 422 from the server raise their own classes with the server's message."""
    url = simulator.base_url
    async with hr.HappyRobotClient("wrong-key", url) as bad_key:
        with pytest.raises(hr.AuthenticationError) as auth:
            await bad_key.models.list()
    assert auth.value.status_code == 401 and auth.value.message
    async with hr.HappyRobotClient(simulator.api_key, url, organization_id="other") as other:
        with pytest.raises(hr.PermissionDeniedError):
            await other.models.list()
    async with hr.HappyRobotClient(simulator.api_key, url) as client:
        with pytest.raises(hr.NotFoundError):
            await client.models.get("0" * 24)
        with pytest.raises(hr.BadRequestError) as bad:
            await client.models.create(**{**job(simulator), "from_model_id": "f" * 24})
    assert bad.value.status_code == 422 and "from_model_id" in bad.value.message


async def test_other_organization_is_invisible(simulator: Simulator) -> None:
    """A key of another organization gets 404 for a model it does not own."""
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        created = await client.models.create(**job(simulator))
    other_key = simulator.add_api_key()
    async with hr.HappyRobotClient(other_key, simulator.base_url) as other:
        with pytest.raises(hr.NotFoundError):
            await other.models.get(created.id)


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("create", {"from_model_id": "short"}, "from_model_id"),
    ("create", {"name": ""}, "name"),
    ("create", {"use_case_id": ""}, "use_case_id"),
    ("create", {"train_sample_ids": "s1"}, "train_sample_ids"),
    ("create", {"test_sample_ids": ["", "x"]}, "test_sample_ids[0]"),
    ("create", {"explain_tools": "no"}, "explain_tools"),
    ("get", {"model_id": "x" * 23}, "model_id"),
    ("list", {"status": "queued"}, "status"),
    ("list", {"trainable": "true"}, "trainable"),
]


@pytest.mark.parametrize(("call", "change", "field"), BAD_CALLS)
async def test_validation_sends_nothing(
    simulator: Simulator,
    client: hr.HappyRobotClient,
    call: str,
    change: dict[str, Any],
    field: str,
) -> None:
    """Every bad argument raises InvalidRequestError naming the field, and no request is sent."""
    with pytest.raises(hr.InvalidRequestError) as info:
        if call == "create":
            await client.models.create(**{**job(simulator), **change})
        elif call == "get":
            await client.models.get(**change)
        else:
            await client.models.list(**change)
    assert info.value.field == field
    assert simulator.stats.total_requests == 0


async def test_wrong_shape_and_malformed_json(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A 200 with the wrong shape or no JSON is a ResponseValidationError, not a crash;
    a list item that is not a model is left out (and logged), the rest still served."""
    model_id = simulator.base_model_ids(simulator.use_case_ids[0])[0]
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        simulator.faults = [Fault("wrong_shape", route="get", body={"id": 5})]
        with pytest.raises(hr.ResponseValidationError) as shape:
            await client.models.get(model_id)
        assert shape.value.path.startswith("$.")
        simulator.faults = [Fault("wrong_shape", route="list", body={"id": 5})]
        with pytest.raises(hr.ResponseValidationError, match="expected an array"):
            await client.models.list()
        good = {"id": model_id, "created_at": "2024-01-01T00:00:00Z", "status": "active"}
        items = [{"id": "f" * 24, "name": 5}, {**good, "name": "kept"}]
        simulator.faults = [Fault("wrong_shape", route="list", body=items)]
        assert [m.name for m in await client.models.list()] == ["kept"]
        assert "left out item 0" in caplog.text and "@ $[0]" in caplog.text
        simulator.faults = [Fault("malformed_json", route="list")]
        with pytest.raises(hr.ResponseValidationError, match="not JSON"):
            await client.models.list()


def test_construction_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key argument and no HAPPYROBOT_API_KEY is a clear error at construction."""
    monkeypatch.delenv("HAPPYROBOT_API_KEY", raising=False)
    with pytest.raises(hr.InvalidRequestError, match="HAPPYROBOT_API_KEY"):
        hr.HappyRobotClient()


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key and base URL come from the environment; the default URL is the public API."""
    monkeypatch.setenv("HAPPYROBOT_API_KEY", "env-key-123")
    monkeypatch.delenv("HAPPYROBOT_BASE_URL", raising=False)
    assert hr.HappyRobotClient().base_url == "https://app.happyrobot.ai/api/v1"
    monkeypatch.setenv("HAPPYROBOT_BASE_URL", "http://127.0.0.1:9/api/v1/")
    assert hr.HappyRobotClient().base_url == "http://127.0.0.1:9/api/v1"


@pytest.mark.parametrize(
    "url", ["http://example.com/api/v1", "http://10.0.0.1/api/v1", "ftp://x/y", "nonsense"]
)
def test_insecure_base_url_refused(url: str) -> None:
    """Plain http to anything but loopback (and non-http URLs) is refused at construction."""
    with pytest.raises(hr.InvalidRequestError, match="base_url"):
        hr.HappyRobotClient("key", url)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_retries", -1),
        ("max_concurrency", 0),
        ("timeout", 0),
        ("connect_timeout", -1.0),
        ("rate_limit", 0),
    ],
)
def test_bad_client_options_are_named(option: str, value: float) -> None:
    """A bad client option is refused at construction, by name."""
    with pytest.raises(hr.InvalidRequestError) as info:
        hr.HappyRobotClient("key", "http://127.0.0.1:9/api/v1", **{option: value})
    assert info.value.field == option


@pytest.mark.parametrize("url", ["http://localhost:1/api/v1", "http://[::1]:1/api/v1"])
def test_loopback_http_allowed(url: str) -> None:
    """Plain http to a loopback host is allowed (the simulator)."""
    assert hr.HappyRobotClient("key", url).base_url == url


async def test_key_never_shown(
    simulator_factory: SimulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The key is absent from the repr, every log line and every exception's text."""
    sim = await simulator_factory(faults=[Fault("server_error", rate=1.0, status=502)])
    caplog.set_level(logging.DEBUG, logger="happyrobot_async")
    policy = hr.RetryPolicy(max_retries=2, initial_delay=0.01)
    async with hr.HappyRobotClient(sim.api_key, sim.base_url, retry_policy=policy) as client:
        assert sim.api_key not in repr(client)
        raised: list[BaseException] = []
        for call in (client.models.list(), client.models.get("0" * 24)):
            try:
                await call
            except hr.HappyRobotError as exc:
                raised.append(exc)
    assert len(raised) == 2
    assert caplog.records
    for exc in raised:
        assert sim.api_key not in str(exc) and sim.api_key not in repr(exc)
        assert sim.api_key not in str(vars(exc))
    assert sim.api_key not in caplog.text


async def test_borrowed_session_is_not_closed(simulator: Simulator) -> None:
    """A session passed in stays open after the client closes."""
    async with aiohttp.ClientSession() as session:
        async with hr.HappyRobotClient(
            simulator.api_key, simulator.base_url, session=session
        ) as client:
            await client.models.list()
        assert not session.closed


async def test_client_works_without_async_with(simulator: Simulator) -> None:
    """Without `async with`, the session opens on first use and close() releases it."""
    client = hr.HappyRobotClient(simulator.api_key, simulator.base_url)
    try:
        assert await client.models.list(use_case_id=simulator.use_case_ids[0])
    finally:
        await client.close()
