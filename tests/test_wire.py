"""The pure protocol layer: requests built and responses decoded with no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

import happyrobot_async as hr
from happyrobot_async import _wire

ID = "65a1f0c2e4b0a1b2c3d4e5f8"
MODEL = {
    "id": ID,
    "created_at": "2024-01-01T01:01:01Z",
    "status": "pending",
    "name": "Carrier sales agent v2",
    "organization_id": "65a1f0c2e4b0a1b2c3d4e5f0",
    "use_case_id": "65a1f0c2e4b0a1b2c3d4e5f6",
    "train_sample_ids": ["a", "b"],
    "test_sample_ids": ["c"],
    "from_model_id": "65a1f0c2e4b0a1b2c3d4e5f7",
}


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_create_request_carries_every_field() -> None:
    """A create is a POST to /models whose JSON body holds every documented field."""
    create = hr.CreateModel(
        use_case_id="uc",
        name="n",
        from_model_id="f" * 24,
        train_sample_ids=["a"],
        test_sample_ids=("b",),
        explain_tools=False,
    )
    request = _wire.create_request(create)
    assert (request.method, request.path) == ("POST", "/models")
    assert json.loads(request.body or b"") == {
        "use_case_id": "uc",
        "name": "n",
        "from_model_id": "f" * 24,
        "train_sample_ids": ["a"],
        "test_sample_ids": ["b"],
        "explain_tools": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "params"),
    [
        ({}, ()),
        ({"use_case_id": "uc"}, (("use_case_id", "uc"),)),
        ({"status": hr.ModelStatus.ACTIVE}, (("status", "active"),)),
        ({"status": "failed"}, (("status", "failed"),)),
        ({"trainable": True}, (("trainable", "true"),)),
        ({"trainable": False}, (("trainable", "false"),)),
    ],
)
def test_list_request_filters(kwargs: dict[str, object], params: tuple[object, ...]) -> None:
    """List filters become query parameters spelled as the API documents them."""
    request = _wire.list_request(**kwargs)  # type: ignore[arg-type]
    assert (request.method, request.path, request.params) == ("GET", "/models", params)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "queued"}, "status"),
        ({"status": hr.ModelStatus.UNKNOWN}, "status"),
        ({"trainable": "yes"}, "trainable"),
        ({"use_case_id": ""}, "use_case_id"),
        ({"use_case_id": 5}, "use_case_id"),
    ],
)
def test_list_request_refuses_bad_filters(kwargs: dict[str, object], field: str) -> None:
    """A bad list filter is refused by name before anything is sent."""
    with pytest.raises(hr.InvalidRequestError) as info:
        _wire.list_request(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("model_id", ["short", "x" * 25, "", 123])
def test_get_request_refuses_bad_ids(model_id: object) -> None:
    """A model id that is not 24 characters is refused before anything is sent."""
    with pytest.raises(hr.InvalidRequestError, match="model_id"):
        _wire.get_request(model_id)  # type: ignore[arg-type]


def test_decode_model_round_trip() -> None:
    """A documented model body decodes to a typed, aware `Model`."""
    model = _wire.decode_model(200, {}, body(MODEL))
    assert model.id == ID
    assert model.status is hr.ModelStatus.PENDING
    assert model.created_at == datetime(2024, 1, 1, 1, 1, 1, tzinfo=UTC)
    assert model.train_sample_ids == ("a", "b")
    assert model.trainable is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T01:01:01Z", datetime(2024, 1, 1, 1, 1, 1, tzinfo=UTC)),
        (
            "2024-01-01T03:01:01+02:00",
            datetime(2024, 1, 1, 3, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2024-01-01T01:01:01.250Z", datetime(2024, 1, 1, 1, 1, 1, 250000, tzinfo=UTC)),
        ("2024-01-01T01:01:01", datetime(2024, 1, 1, 1, 1, 1, tzinfo=UTC)),
    ],
)
def test_created_at_is_aware(text: str, expected: datetime) -> None:
    """`created_at` accepts Z, offsets and fractions, and is always timezone-aware."""
    model = _wire.decode_model(200, {}, body({**MODEL, "created_at": text}))
    assert model.created_at == expected
    assert model.created_at.tzinfo is not None


def test_unknown_status_and_extra_keys_survive() -> None:
    """An unknown status becomes UNKNOWN with the raw string kept; unknown keys are ignored."""
    model = _wire.decode_model(
        200, {}, body({**MODEL, "status": "queued", "brand_new": {"x": 1}, "provider": "hr"})
    )
    assert model.status is hr.ModelStatus.UNKNOWN
    assert model.raw_status == "queued"
    assert model.provider == "hr"
    assert not model.status.is_terminal


def test_missing_optional_fields_default() -> None:
    """Only id, created_at, status and name are required; the rest default."""
    minimal = {k: MODEL[k] for k in ("id", "created_at", "status", "name")}
    model = _wire.decode_model(200, {}, body(minimal))
    assert model.use_case_id is None
    assert model.train_sample_ids is None
    assert model.use_backup_when_idle is False


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({**MODEL, "id": 5}, "$.id"),
        ({**MODEL, "trainable": "false"}, "$.trainable"),
        ({k: v for k, v in MODEL.items() if k != "name"}, "$.name"),
        ({**MODEL, "created_at": "yesterday"}, "$.created_at"),
        ([MODEL], "$"),
    ],
)
def test_wrong_shape_names_the_field(payload: object, path: str) -> None:
    """A body of the wrong shape raises ResponseValidationError with the path to the bad field."""
    with pytest.raises(hr.ResponseValidationError) as info:
        _wire.decode_model(200, {}, body(payload))
    assert info.value.path == path
    assert info.value.status_code == 200


def test_list_bad_items_are_set_aside_by_index() -> None:
    """Bad list items are set aside with their index, id, name and path; the rest decode."""
    other = {**MODEL, "id": "b" * 24}
    items = [MODEL, {**MODEL, "status": 3, "name": "bad"}, "junk", other]
    listed = _wire.decode_models(200, {}, body(items))
    assert [m.id for m in listed.models] == [ID, "b" * 24]
    first, second = listed.bad
    assert (first.index, first.model_id, first.name, first.error.path) == (
        1,
        ID,
        "bad",
        "$[1].status",
    )
    assert (second.index, second.model_id, second.name, second.error.path) == (
        2,
        None,
        None,
        "$[2]",
    )


@pytest.mark.parametrize(
    "spelling",
    [
        "2024-01-01T01:01:01z",
        "2024-01-01t01:01:01Z",
        "2024-01-01 01:01:01Z",
        "2024-01-01T01:01:01.123456789Z",
        "2024-01-01T02:01:01+01:00",
        "2024-01-01T01:01:01.5z",
    ],
)
def test_every_rfc3339_spelling_is_read(spelling: str) -> None:
    """created_at in any RFC 3339 spelling decodes to the same aware instant (to the second)."""
    model = _wire.decode_model(200, {}, body({**MODEL, "created_at": spelling}))
    assert model.created_at.replace(microsecond=0) == datetime(2024, 1, 1, 1, 1, 1, tzinfo=UTC)


def test_list_that_is_not_an_array() -> None:
    """An object where an array belongs is a ResponseValidationError, not a crash."""
    with pytest.raises(hr.ResponseValidationError):
        _wire.decode_models(200, {}, body({"models": []}))


@pytest.mark.parametrize("raw", [b"", b"<html>oops</html>", b'{"id": "x"', b"\xff\xfe"])
def test_non_json_success_body(raw: bytes) -> None:
    """A 200 whose body is not JSON is a ResponseValidationError, never a JSONDecodeError."""
    with pytest.raises(hr.ResponseValidationError, match="not JSON"):
        _wire.decode_model(200, {}, raw)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, hr.BadRequestError),
        (422, hr.BadRequestError),
        (401, hr.AuthenticationError),
        (403, hr.PermissionDeniedError),
        (404, hr.NotFoundError),
        (409, hr.ConflictError),
        (429, hr.RateLimitError),
        (500, hr.ServerError),
        (502, hr.ServerError),
        (503, hr.ServerError),
        (504, hr.ServerError),
        (307, hr.APIStatusError),
        (418, hr.APIStatusError),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[hr.APIStatusError]) -> None:
    """Each status raises its own class, carrying status, message and body."""
    with pytest.raises(cls) as info:
        _wire.decode_model(status, {"x-request-id": "req-1"}, body({"message": "nope"}))
    assert type(info.value) is cls
    assert info.value.status_code == status
    assert info.value.message == "nope"
    assert info.value.request_id == "req-1"
    assert '"nope"' in info.value.body


@pytest.mark.parametrize("raw", [b"", b"<html><body>502 Bad Gateway</body></html>", b"[1]"])
def test_error_without_json_message(raw: bytes) -> None:
    """An HTML, empty or odd error body still gives a typed error with the status phrase."""
    with pytest.raises(hr.ServerError) as info:
        _wire.decode_models(502, {}, raw)
    assert info.value.message == "Bad Gateway"
    assert info.value.status_code == 502


def test_error_reads_retry_after() -> None:
    """A 429's Retry-After is on the error."""
    error = _wire.error_for(429, {"retry-after": "7"}, b"")
    assert isinstance(error, hr.RateLimitError)
    assert error.retry_after == 7.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Mon, 01 Jan 2024 00:00:30 GMT"}, 30.0),
        ({"retry-after": "Sun, 31 Dec 2023 23:00:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "x", "RETRY-AFTER": "2"}, 2.0),
    ],
)
def test_retry_after_header_forms(headers: dict[str, str], seconds: float | None) -> None:
    """retry-after-ms wins; Retry-After may be seconds or an HTTP date; any case; junk ignored."""
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert _wire.retry_after_seconds(headers, now) == seconds


def test_status_error_names_the_request() -> None:
    """An error response says which request failed: method, path, and the request id."""
    request = _wire.get_request("a" * 24)
    raw = b'{"message": "no such model"}'
    with pytest.raises(hr.NotFoundError) as info:
        _wire.decode_model(404, {"X-Request-Id": "req-1"}, raw, request)
    error = info.value
    assert (error.method, error.path, error.request_id) == ("GET", "/models/" + "a" * 24, "req-1")
    assert str(error) == f"GET /models/{'a' * 24}: 404 Not Found: no such model (request id req-1)"


def test_missing_models_endpoint_suggests_the_base_url() -> None:
    """A 404 on the models collection itself says the base URL is wrong, and how to fix it."""
    request = _wire.list_request()
    with pytest.raises(hr.NotFoundError, match="should end in /api/v1"):
        _wire.decode_models(404, {}, b"<html>Not Found</html>", request)


def test_json_backend_is_orjson_exactly_when_installed() -> None:
    """With the [speedups] extra the wire uses orjson; without it, the stdlib; same results."""
    import importlib.util
    import os

    from happyrobot_async import _json

    expected = (
        "orjson"
        if importlib.util.find_spec("orjson") and not os.environ.get("HAPPYROBOT_NO_SPEEDUPS")
        else "json"
    )
    assert expected == _json.BACKEND
    assert json.loads(_json.dumps({"a": [1, "é"]})) == {"a": [1, "é"]}
    assert _json.loads(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}
