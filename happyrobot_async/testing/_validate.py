"""Strict parsing of requests: the simulator refuses what the contract forbids."""

from __future__ import annotations

from typing import Any

import attrs

from ._models import STATUSES

ID_LENGTH = 24

_REQUIRED = ("use_case_id", "name", "from_model_id", "train_sample_ids", "test_sample_ids")
_ALLOWED = frozenset((*_REQUIRED, "explain_tools"))


class RequestError(Exception):
    """A request the API refuses; carries the HTTP status and the `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.frozen(kw_only=True)
class CreateRequest:
    """A validated `POST /models` body."""

    use_case_id: str
    name: str
    from_model_id: str
    train_sample_ids: tuple[str, ...]
    test_sample_ids: tuple[str, ...]
    explain_tools: bool = True


@attrs.frozen(kw_only=True)
class ListQuery:
    """Validated `GET /models` filters (None: no filter)."""

    use_case_id: str | None = None
    status: str | None = None
    trainable: bool | None = None


def _unprocessable(message: str) -> RequestError:
    return RequestError(422, message)


def _string_list(body: dict[str, Any], field: str) -> tuple[str, ...]:
    value = body[field]
    if not isinstance(value, list):
        raise _unprocessable(f"{field}: expected an array of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _unprocessable(f"{field}[{index}]: expected a string")
    return tuple(value)


def parse_create(body: object) -> CreateRequest:
    """Validate a decoded JSON body against CreateModelRequest (422 naming the field)."""
    if not isinstance(body, dict):
        raise _unprocessable("request body: expected a JSON object")
    unknown = sorted(str(key) for key in body if key not in _ALLOWED)
    if unknown:
        raise _unprocessable(f"{unknown[0]}: unknown field")
    for field in _REQUIRED:
        if field not in body:
            raise _unprocessable(f"{field}: field required")
    for field in ("use_case_id", "name", "from_model_id"):
        if not isinstance(body[field], str):
            raise _unprocessable(f"{field}: expected a string")
    train = _string_list(body, "train_sample_ids")
    test = _string_list(body, "test_sample_ids")
    explain_tools = body.get("explain_tools", True)
    if not isinstance(explain_tools, bool):
        raise _unprocessable("explain_tools: expected a boolean")
    if len(body["from_model_id"]) != ID_LENGTH:
        raise _unprocessable(f"from_model_id: must be exactly {ID_LENGTH} characters")
    if not body["name"].strip():
        raise _unprocessable("name: must not be empty")
    return CreateRequest(
        use_case_id=body["use_case_id"],
        name=body["name"],
        from_model_id=body["from_model_id"],
        train_sample_ids=train,
        test_sample_ids=test,
        explain_tools=explain_tools,
    )


def parse_list_query(query: dict[str, str]) -> ListQuery:
    """Validate the list filters (400 on an unknown status or a non-boolean trainable)."""
    status = query.get("status")
    if status is not None and status not in STATUSES:
        raise RequestError(400, f"status: must be one of {', '.join(STATUSES)}")
    trainable_raw = query.get("trainable")
    trainable: bool | None = None
    if trainable_raw is not None:
        if trainable_raw not in ("true", "false"):
            raise RequestError(400, 'trainable: must be "true" or "false"')
        trainable = trainable_raw == "true"
    return ListQuery(use_case_id=query.get("use_case_id"), status=status, trainable=trainable)
