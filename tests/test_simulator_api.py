"""The simulator's endpoints: shapes, auth, validation, filters, isolation."""

from __future__ import annotations

import re
import time
from calendar import timegm
from typing import TYPE_CHECKING, Any

import pytest

from happyrobot_async.testing import Simulator

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Api

HEX24 = re.compile(r"^[0-9a-f]{24}$")
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
FULL_KEYS = {
    "id",
    "created_at",
    "status",
    "name",
    "organization_id",
    "use_case_id",
    "description",
    "train_sample_ids",
    "test_sample_ids",
    "from_model_id",
    "trainable",
    "use_backup_for_generations",
    "use_backup_when_idle",
}


async def test_create_returns_full_pending_model(api: Api, simulator: Simulator) -> None:
    """A create answers 200 with the full model, pending, in the key's organization."""
    body = api.create_body()
    reply = await api.create()
    assert reply.status == 200
    model = reply.body
    assert set(model) == FULL_KEYS
    assert model["status"] == "pending"
    assert HEX24.match(model["id"])
    assert model["organization_id"] == simulator.organization_id
    for key in ("use_case_id", "name", "from_model_id", "train_sample_ids", "test_sample_ids"):
        assert model[key] == body[key]
    assert model["trainable"] is False


async def test_created_at_is_real_wall_clock(
    make_api: Callable[..., Api], simulator_factory: Any
) -> None:
    """created_at is real UTC time in whole seconds, whatever the simulated clock's speed."""
    sim = await simulator_factory(speed=10_000.0)
    sim.clock.advance(86_400)
    reply = await make_api(sim).create()
    created_at = reply.body["created_at"]
    assert CREATED_AT.match(created_at)
    stamp = timegm(time.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(stamp - time.time()) < 5


async def test_get_returns_what_create_returned(api: Api) -> None:
    """GET /models/{id} returns the created model with the same fields."""
    created = (await api.create()).body
    reply = await api.get(created["id"])
    assert reply.status == 200
    assert reply.body == created


async def test_list_items_have_no_sample_ids_and_keep_creation_order(api: Api) -> None:
    """List items omit the sample ids and come in creation order, base models first."""
    first = (await api.create(name="first")).body
    second = (await api.create(name="second")).body
    items = (await api.list()).body
    assert all("train_sample_ids" not in m and "test_sample_ids" not in m for m in items)
    assert [m["id"] for m in items][-2:] == [first["id"], second["id"]]
    assert len(items) == 3 * 2 + 2


async def test_seeded_base_models_are_active_and_trainable(api: Api, simulator: Simulator) -> None:
    """Each default use case has two active, trainable base models to clone from."""
    assert len(simulator.use_case_ids) == 3
    for use_case_id in simulator.use_case_ids:
        items = (await api.list(use_case_id=use_case_id)).body
        assert [m["id"] for m in items] == simulator.base_model_ids(use_case_id)
        assert all(m["status"] == "active" and m["trainable"] for m in items)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"trainable": "true"}, 6),
        ({"trainable": "false"}, 2),
        ({"status": "pending"}, 2),
        ({"status": "active"}, 6),
        ({"status": "failed"}, 0),
    ],
)
async def test_list_filters(api: Api, params: dict[str, str], expected: int) -> None:
    """The status and trainable filters select exactly the matching models."""
    await api.create()
    await api.create(use_case=1)
    items = (await api.list(**params)).body
    assert len(items) == expected


async def test_list_filter_by_use_case(api: Api, simulator: Simulator) -> None:
    """The use_case_id filter returns only that use case's models."""
    created = (await api.create(use_case=2)).body
    items = (await api.list(use_case_id=simulator.use_case_ids[2])).body
    assert {m["use_case_id"] for m in items} == {simulator.use_case_ids[2]}
    assert created["id"] in {m["id"] for m in items}


@pytest.mark.parametrize(("params"), [{"status": "queued"}, {"trainable": "yes"}])
async def test_list_bad_filter_is_400(api: Api, params: dict[str, str]) -> None:
    """An unknown status or a non-boolean trainable is refused with 400 naming the filter."""
    reply = await api.list(**params)
    assert reply.status == 400
    assert next(iter(params)) in reply.body["message"]


@pytest.mark.parametrize("model_id", ["0" * 24, "short", "0" * 25])
async def test_get_unknown_or_malformed_id_is_404(api: Api, model_id: str) -> None:
    """An unknown id, or one not exactly 24 characters, is 404 with a message."""
    reply = await api.get(model_id)
    assert reply.status == 404
    assert isinstance(reply.body["message"], str)


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic abc"}],
    ids=["missing", "wrong-key", "wrong-scheme"],
)
@pytest.mark.parametrize("call", ["create", "get", "list"])
async def test_bad_auth_is_401(api: Api, headers: dict[str, str], call: str) -> None:
    """Every endpoint refuses a missing or wrong key with 401 and a message."""
    method, path, kwargs = {
        "create": ("POST", "/models", {"json": api.create_body()}),
        "get": ("GET", f"/models/{api.sim.base_model_ids(api.sim.use_case_ids[0])[0]}", {}),
        "list": ("GET", "/models", {}),
    }[call]
    reply = await api.request(method, path, auth=False, headers=headers, **kwargs)
    assert reply.status == 401
    assert reply.body["message"]
    assert api.sim.stats.models_created == 0


async def test_organization_header_must_match_the_key(api: Api, simulator: Simulator) -> None:
    """x-organization-id matching the key is accepted; any other organization is 403."""
    ok = await api.request(
        "GET", "/models", headers={"x-organization-id": simulator.organization_id}
    )
    assert ok.status == 200
    other = simulator.organization_of(simulator.add_api_key())
    reply = await api.request("GET", "/models", headers={"x-organization-id": str(other)})
    assert reply.status == 403
    assert reply.body["message"]


async def test_organizations_are_isolated(
    make_api: Callable[..., Api], simulator: Simulator
) -> None:
    """A key never sees, gets or clones another organization's models."""
    mine = make_api(simulator)
    theirs = make_api(simulator, simulator.add_api_key())
    created = (await mine.create()).body
    assert (await theirs.get(created["id"])).status == 404
    their_items = (await theirs.list()).body
    assert created["id"] not in {m["id"] for m in their_items}
    assert {m["organization_id"] for m in their_items} == {
        theirs.sim.organization_of(str(theirs.key))
    }
    reply = await theirs.request(
        "POST", "/models", json={**mine.create_body(), "from_model_id": created["from_model_id"]}
    )
    assert reply.status == 422
    assert created["from_model_id"] in reply.body["message"]


async def test_new_key_for_existing_organization_sees_its_models(
    make_api: Callable[..., Api], simulator: Simulator
) -> None:
    """A second key of the same organization sees the same models."""
    created = (await make_api(simulator).create()).body
    second = make_api(simulator, simulator.add_api_key(simulator.organization_id))
    assert (await second.get(created["id"])).status == 200


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {k: v for k, v in body.items() if k != key}


def _with(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {**body, **changes}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_without("use_case_id"), "use_case_id"),
        (_without("name"), "name"),
        (_without("from_model_id"), "from_model_id"),
        (_without("train_sample_ids"), "train_sample_ids"),
        (_without("test_sample_ids"), "test_sample_ids"),
        (_with(name=5), "name"),
        (_with(use_case_id=None), "use_case_id"),
        (_with(train_sample_ids="abc"), "train_sample_ids"),
        (_with(test_sample_ids=[1]), "test_sample_ids[0]"),
        (_with(explain_tools="yes"), "explain_tools"),
        (_with(extra="x"), "extra"),
        (_with(from_model_id="a" * 23), "from_model_id"),
        (_with(from_model_id="a" * 25), "from_model_id"),
        (_with(name=""), "name"),
        (_with(from_model_id="f" * 24), "from_model_id"),
    ],
)
async def test_invalid_create_is_422_naming_the_field(
    api: Api, mutate: Callable[[dict[str, Any]], dict[str, Any]], field: str
) -> None:
    """Each invalid body is refused with 422 naming the field, and nothing is stored."""
    before = len(api.sim.models)
    reply = await api.request("POST", "/models", json=mutate(api.create_body()))
    assert reply.status == 422
    assert field in reply.body["message"]
    assert len(api.sim.models) == before
    assert api.sim.stats.models_created == 0


@pytest.mark.parametrize("body", [[], "x", 3])
async def test_create_body_not_an_object_is_422(api: Api, body: Any) -> None:
    """A JSON body that is not an object is 422."""
    reply = await api.request("POST", "/models", json=body)
    assert reply.status == 422


@pytest.mark.parametrize("data", [b"", b"{not json", b"\xff"])
async def test_create_body_not_json_is_400(api: Api, data: bytes) -> None:
    """A body that is not JSON is 400 and stores nothing."""
    reply = await api.request(
        "POST", "/models", data=data, headers={"content-type": "application/json"}
    )
    assert reply.status == 400
    assert reply.body["message"]
    assert api.sim.stats.models_created == 0


async def test_explain_tools_is_accepted(api: Api) -> None:
    """The optional explain_tools flag is accepted."""
    assert (await api.create(explain_tools=False)).status == 200


async def test_unknown_api_path_is_404_json(api: Api) -> None:
    """A path outside the three endpoints is a 404 with a message."""
    reply = await api.request("GET", "/nothing")
    assert reply.status == 404
    assert reply.body["message"]


async def test_extra_fields_variant(api: Api, simulator: Simulator) -> None:
    """extra_fields adds the newer revision's provider/explain_tools/compressed fields."""
    simulator.extra_fields = True
    model = (await api.create(explain_tools=False)).body
    assert model["provider"] == "happyrobot"
    assert model["explain_tools"] is False
    assert model["compressed"] is False
    assert model["compressed_version"] == "v0"
    assert "provider" in (await api.list()).body[0]


async def test_optional_fields_omitted_variant(api: Api, simulator: Simulator) -> None:
    """optional_fields="omitted" leaves only the required keys, everywhere."""
    simulator.optional_fields = "omitted"
    created = (await api.create()).body
    assert set(created) == {"id", "created_at", "status", "name"}
    assert set((await api.get(created["id"])).body) == set(created)
    assert all(set(m) == set(created) for m in (await api.list()).body)


async def test_optional_fields_null_variant(
    make_api: Callable[..., Api], simulator_factory: Any
) -> None:
    """optional_fields="null" nulls organization_id and use_case_id."""
    sim = await simulator_factory(optional_fields="null")
    model = (await make_api(sim).create()).body
    assert model["organization_id"] is None
    assert model["use_case_id"] is None


def test_bad_optional_fields_mode_is_refused() -> None:
    """An unknown optional_fields mode fails at construction."""
    with pytest.raises(ValueError, match="optional_fields"):
        Simulator(optional_fields="sometimes")  # type: ignore[arg-type]
