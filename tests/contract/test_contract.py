"""Every simulator response (and every valid request we send) matches the OpenAPI contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

SPEC = OpenAPI.from_file_path(str(Path(__file__).with_name("happyrobot-models.openapi.yaml")))
SPEC_HOST = "http://127.0.0.1:4010"  # the spec's server; the simulator's port differs

VARIANTS = [
    {"extra_fields": extra, "optional_fields": optional}
    for extra in (False, True)
    for optional in ("present", "omitted", "null")
]


class Contract:
    """Sends requests to a simulator and checks both sides against the spec."""

    def __init__(self, session: aiohttp.ClientSession, sim: Simulator) -> None:
        self.session = session
        self.sim = sim

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        auth: str | None = "default",
        valid_request: bool = True,
    ) -> tuple[int, Any]:
        """Send a request, validate request (if meant valid) and response; return status, JSON."""
        headers = {"content-type": "application/json"} if method == "POST" else {}
        if auth is not None:
            headers["authorization"] = f"Bearer {self.sim.api_key if auth == 'default' else auth}"
        if body is not None:
            data = json.dumps(body).encode()
        request = MockRequest(
            SPEC_HOST, method.lower(), f"/api/v1{path}", args=params, headers=headers, data=data
        )
        if valid_request:
            SPEC.validate_request(request)
        async with self.session.request(
            method, self.sim.base_url + path, headers=headers, data=data, params=params
        ) as response:
            raw = await response.read()
            status = response.status
            content_type = response.headers["Content-Type"].split(";")[0]
        SPEC.validate_response(
            request, MockResponse(raw, status_code=status, content_type=content_type)
        )
        return status, json.loads(raw)

    def create_body(self, **changes: Any) -> dict[str, Any]:
        """Return a valid create body."""
        use_case_id = self.sim.use_case_ids[0]
        return {
            "use_case_id": use_case_id,
            "name": "Carrier sales agent v2",
            "from_model_id": self.sim.base_model_ids(use_case_id)[0],
            "train_sample_ids": ["65a1f0c2e4b0a1b2c3d4e600"],
            "test_sample_ids": ["65a1f0c2e4b0a1b2c3d4e602"],
            "explain_tools": True,
            **changes,
        }


@pytest.fixture
async def contract(simulator: Simulator, session: aiohttp.ClientSession) -> Contract:
    """A contract checker on the default simulator (slowed clock: statuses move on advance)."""
    simulator.clock.speed = 0.0
    return Contract(session, simulator)


@pytest.mark.parametrize(
    "variant", VARIANTS, ids=lambda v: f"{v['extra_fields']}-{v['optional_fields']}"
)
async def test_success_bodies_in_every_variant(
    simulator_factory: SimulatorFactory, session: aiohttp.ClientSession, variant: dict[str, Any]
) -> None:
    """POST, GET and list 200 bodies match the spec, whatever the response variant."""
    sim = await simulator_factory(speed=0.0, failure_rate=0.5, **variant)
    contract = Contract(session, sim)
    ids = []
    for n in range(6):
        status, model = await contract.call(
            "POST", "/models", body=contract.create_body(name=f"m{n}")
        )
        assert status == 200
        ids.append(model["id"])
    for step in (0.0, 3.0, 10.0):  # pending, training, then terminal
        sim.clock.advance(step)
        for model_id in ids:
            assert (await contract.call("GET", f"/models/{model_id}"))[0] == 200
        assert (await contract.call("GET", "/models"))[0] == 200


@pytest.mark.parametrize(
    "params",
    [
        {"use_case_id": "x"},
        {"status": "active"},
        {"status": "pending"},
        {"trainable": "true"},
        {"trainable": "false"},
    ],
)
async def test_filtered_lists(contract: Contract, params: dict[str, str]) -> None:
    """Filtered list responses match the spec."""
    await contract.call("POST", "/models", body=contract.create_body())
    assert (await contract.call("GET", "/models", params=params))[0] == 200


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/models"), ("GET", "/models"), ("GET", "/models/" + "0" * 24)]
)
@pytest.mark.parametrize("auth", [None, "wrong"])
async def test_401_bodies(contract: Contract, method: str, path: str, auth: str | None) -> None:
    """401 bodies match the spec's Error."""
    body = contract.create_body() if method == "POST" else None
    status, _ = await contract.call(
        method, path, body=body, auth=auth, valid_request=auth is not None
    )
    assert status == 401


@pytest.mark.parametrize("model_id", ["0" * 24, "f" * 24])
async def test_404_body(contract: Contract, model_id: str) -> None:
    """A 404 body matches the spec's Error."""
    assert (await contract.call("GET", f"/models/{model_id}"))[0] == 404


async def test_400_body(contract: Contract) -> None:
    """A 400 for a non-JSON body matches the spec's Error."""
    status, _ = await contract.call("POST", "/models", data=b"{nope", valid_request=False)
    assert status == 400


@pytest.mark.parametrize(
    "changes",
    [
        {"name": ""},
        {"from_model_id": "a" * 24},
        {"from_model_id": "short"},
        {"extra": 1},
        {"name": 3},
    ],
)
async def test_422_bodies(contract: Contract, changes: dict[str, Any]) -> None:
    """422 bodies match the spec's Error."""
    body = contract.create_body(**changes)
    status, _ = await contract.call("POST", "/models", body=body, valid_request=False)
    assert status == 422


async def test_the_check_catches_a_wrong_shape(contract: Contract, simulator: Simulator) -> None:
    """The contract check is not vacuous: a wrong-shaped body fails it."""
    simulator.faults = [Fault("wrong_shape", route="get")]
    model_id = simulator.base_model_ids(simulator.use_case_ids[0])[0]
    with pytest.raises(Exception, match="not valid"):
        await contract.call("GET", f"/models/{model_id}")
