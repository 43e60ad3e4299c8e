"""Hostile-server knobs: a skewed clock, hangs, per-model faults, 4xx, huge bodies, odd items."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from conftest import wait_until

from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing._faults import FAULT_KINDS

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Api

    from happyrobot_async.testing.pytest_plugin import SimulatorFactory

HOUR = 3600.0


def _created_at(text: str) -> float:
    """Parse an RFC 3339 created_at of any spelling the simulator sends."""
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).timestamp()


def _date_header(reply: Any) -> float:
    return parsedate_to_datetime(reply.headers["Date"]).timestamp()


def test_new_kinds_are_listed() -> None:
    """FAULT_KINDS, which the CLI reads, lists the new kinds."""
    assert {"hang", "client_error", "oversize"} <= set(FAULT_KINDS)


async def test_every_api_response_has_a_real_date_header(api: Api) -> None:
    """Without an offset every API response, errors included, carries the real time as Date."""
    for reply in (await api.list(), await api.get("0" * 24)):
        assert abs(_date_header(reply) - time.time()) < 5


async def test_clock_offset_shifts_created_at_and_date(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """clock_offset moves created_at (base models too) and the Date header of every response."""
    sim = await simulator_factory(clock_offset=-HOUR)
    api = make_api(sim)
    created = await api.create()
    unauthorized = await api.request("GET", "/models", auth=False)
    base = sim.get_model(sim.base_model_ids(sim.use_case_ids[0])[0])
    for stamp in (_created_at(created.body["created_at"]), _created_at(base.created_at)):
        assert abs(stamp - (time.time() - HOUR)) < 5
    for reply in (created, unauthorized):
        assert abs(_date_header(reply) - (time.time() - HOUR)) < 5


async def test_clock_offset_can_change_at_runtime(simulator: Simulator, api: Api) -> None:
    """Setting sim.clock_offset affects the next responses and creates, not older models."""
    before = (await api.create()).body["created_at"]
    simulator.clock_offset = 2 * HOUR
    assert simulator.clock_offset == 2 * HOUR
    reply = await api.create()
    assert abs(_created_at(reply.body["created_at"]) - (time.time() + 2 * HOUR)) < 5
    assert abs(_date_header(reply) - (time.time() + 2 * HOUR)) < 5
    assert abs(_created_at(before) - time.time()) < 5


async def test_date_header_of_a_truncated_response_is_offset(
    simulator_factory: SimulatorFactory, session: aiohttp.ClientSession
) -> None:
    """Even a response the server prepares itself (truncate) carries the offset Date."""
    sim = await simulator_factory(clock_offset=HOUR, faults=[Fault("truncate", route="list")])
    headers = {"authorization": f"Bearer {sim.api_key}"}
    async with session.get(f"{sim.base_url}/models", headers=headers) as response:
        date = parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert abs(date - (time.time() + HOUR)) < 5


@pytest.mark.parametrize(
    ("spelling", "pattern"),
    [
        ("Z", r"\d\dZ"),
        ("z", r"\d\dz"),
        ("+00:00", r"\d\d\+00:00"),
        ("fraction", r"\d\d\.\d{6}Z"),
    ],
)
async def test_timestamp_format(
    simulator_factory: SimulatorFactory,
    make_api: Callable[..., Api],
    spelling: str,
    pattern: str,
) -> None:
    """timestamp_format picks how created_at is spelled, at construction or at runtime."""
    sim = await simulator_factory(timestamp_format=spelling)
    api = make_api(sim)
    full = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:" + pattern + "$")
    assert all(full.match(m["created_at"]) for m in (await api.list()).body)
    created_at = (await api.create()).body["created_at"]
    assert full.match(created_at)
    assert abs(_created_at(created_at) - time.time()) < 5
    sim.timestamp_format = "Z" if spelling != "Z" else "z"
    assert not full.match((await api.create()).body["created_at"])


def test_bad_clock_settings_are_refused() -> None:
    """An unknown timestamp_format or a non-finite offset fails, at construction or runtime."""
    with pytest.raises(ValueError, match="timestamp_format"):
        Simulator(timestamp_format="Zulu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clock_offset"):
        Simulator(clock_offset=float("nan"))
    sim = Simulator()
    with pytest.raises(ValueError, match="timestamp_format"):
        sim.timestamp_format = "utc"  # type: ignore[assignment]


async def test_hang_answers_nothing_until_the_client_gives_up(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """A hung request gets no response; when the client gives up it is counted as "hang"."""
    sim = await simulator_factory(faults=[Fault("hang", route="create")])
    api = make_api(sim)
    with pytest.raises(asyncio.TimeoutError):
        await api.request(
            "POST", "/models", json=api.create_body(), timeout=aiohttp.ClientTimeout(total=0.3)
        )
    await wait_until(lambda: sim.stats.in_flight == 0)
    assert sim.stats.requests == {"create": {"hang": 1}}
    assert sim.stats.faults == {"hang": 1}
    assert sim.stats.models_created == 0
    async with asyncio.timeout(2):  # a hang on the wrong route fails fast
        assert (await api.list()).status == 200


async def test_close_releases_hung_requests(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """Closing the simulator drops hung connections at once instead of waiting on them."""
    sim = await simulator_factory(faults=[Fault("hang")])
    # POST, not GET: aiohttp resends an idempotent request once when its connection drops.
    hung = asyncio.ensure_future(make_api(sim).create())
    await wait_until(lambda: sim.stats.in_flight == 1)
    started = time.monotonic()
    await sim.close()
    assert time.monotonic() - started < 0.2
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await hung


async def test_per_model_fault_only_hits_that_model(
    simulator_factory: SimulatorFactory, make_api: Callable[..., Api]
) -> None:
    """A fault with model_id fires only on GET of that model: one model's GET never answers."""
    sim = await simulator_factory()
    stuck, fine = sim.base_model_ids(sim.use_case_ids[0])
    sim.faults = [Fault("hang", model_id=stuck)]
    api = make_api(sim)
    async with asyncio.timeout(2):  # a hang on the wrong model fails fast
        assert (await api.get(fine)).status == 200
        assert (await api.list()).status == 200
        assert (await api.create()).status == 200
    with pytest.raises(asyncio.TimeoutError):
        await api.request("GET", f"/models/{stuck}", timeout=aiohttp.ClientTimeout(total=0.3))
    await wait_until(lambda: sim.stats.in_flight == 0)
    assert sim.stats.faults == {"hang": 1}
    assert sim.stats.count("get", "hang") == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "drop", "route": "list", "model_id": "a" * 24},
        {"kind": "drop", "route": "create", "model_id": "a" * 24},
        {"kind": "commit_then_fail", "model_id": "a" * 24},
        {"kind": "drop", "model_id": ""},
        {"kind": "client_error", "status": 500},
        {"kind": "client_error", "status": 399},
        {"kind": "server_error", "status": 403},
        {"kind": "oversize", "size": -1},
    ],
)
def test_bad_new_faults_are_refused(kwargs: dict[str, Any]) -> None:
    """model_id off the get route, a client_error outside 4xx or a negative size fail early."""
    with pytest.raises(ValueError):
        Fault(**kwargs)


@pytest.mark.parametrize("status", [400, 403, 422])
async def test_client_error_answers_its_status_and_stores_nothing(
    simulator: Simulator, api: Api, status: int
) -> None:
    """client_error answers its 4xx with {"message": ...} before handling: nothing is stored."""
    simulator.faults = [Fault("client_error", route="create", status=status)]
    reply = await api.create()
    assert reply.status == status
    assert reply.body["message"].startswith(str(status))
    assert simulator.stats.models_created == 0
    assert simulator.stats.faults == {"client_error": 1}
    assert Fault("client_error").status == 400


async def test_oversize_pads_a_valid_json_body(simulator: Simulator, api: Api) -> None:
    """oversize follows the JSON with `size` bytes of whitespace; the create is stored."""
    simulator.faults = [Fault("oversize", route="create", size=300_000)]
    reply = await api.create(name="big")
    assert reply.status == 200
    assert len(reply.text) > 300_000
    assert json.loads(reply.text)["name"] == "big"
    assert reply.body == (await api.get(reply.body["id"])).body
    assert [m.name for m in simulator.models if not m.is_base] == ["big"]
    assert simulator.stats.faults == {"oversize": 1}


async def test_raw_item_is_listed_and_got_as_is(
    simulator: Simulator, make_api: Callable[..., Api]
) -> None:
    """A raw item shows up as-is among its use case's models for the owning organization only."""
    api = make_api(simulator)
    poison = {"id": "f" * 24, "created_at": "2024-01-01T00:00:00z", "trainable": None}
    use_case_id = simulator.use_case_ids[1]
    first = (await api.create(use_case=1, name="first")).body
    simulator.add_raw_item(use_case_id, poison)
    last = (await api.create(use_case=1, name="last")).body
    items = (await api.list(use_case_id=use_case_id)).body
    assert items[-3:] == [
        {k: v for k, v in first.items() if not k.endswith("sample_ids")},
        poison,
        {k: v for k, v in last.items() if not k.endswith("sample_ids")},
    ]
    assert poison in (await api.list(status="active")).body
    assert poison not in (await api.list(use_case_id=simulator.use_case_ids[0])).body
    assert (await api.get("f" * 24)).body == poison
    second_key = make_api(simulator, simulator.add_api_key(simulator.organization_id))
    assert (await second_key.get("f" * 24)).body == poison
    other = make_api(simulator, simulator.add_api_key())
    assert poison not in (await other.list()).body
    assert (await other.get("f" * 24)).status == 404


def test_raw_item_needs_a_known_use_case() -> None:
    """add_raw_item refuses a use case no organization owns."""
    with pytest.raises(KeyError):
        Simulator().add_raw_item("0" * 24, {"id": "x"})


@pytest.mark.parametrize("call", ["create", "get", "list"])
async def test_forbidden_key_gets_403(
    simulator: Simulator, make_api: Callable[..., Api], call: str
) -> None:
    """A forbidden key authenticates but every request with it is 403 with a message."""
    key = simulator.add_api_key(simulator.organization_id, forbidden=True)
    assert simulator.organization_of(key) == simulator.organization_id
    api = make_api(simulator, key)
    model_id = simulator.base_model_ids(simulator.use_case_ids[0])[0]
    reply = await {"create": api.create, "get": lambda: api.get(model_id), "list": api.list}[call]()
    assert reply.status == 403
    assert reply.body["message"]
    assert simulator.stats.models_created == 0
    assert (await make_api(simulator).list()).status == 200
