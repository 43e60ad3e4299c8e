"""The protocol, with no I/O: build requests, decode `(status, headers, body)`.

Everything here is a pure function over plain values, so it is tested from
recorded responses without a network (the gidgethub "sans-I/O" idea).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Final, NamedTuple, TypeVar

import attrs
import cattrs

from . import errors
from ._json import dumps, loads
from ._serde import converter
from .types import CreateModel, Model, ModelStatus, check_model_id

__all__: list[str] = []

T = TypeVar("T")

_ERROR_BY_STATUS: Final[dict[int, type[errors.APIStatusError]]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    422: errors.BadRequestError,
    429: errors.RateLimitError,
}
_KNOWN_STATUSES: Final = frozenset(s.value for s in ModelStatus if s is not ModelStatus.UNKNOWN)
_MAX_BODY_IN_ERROR: Final = 2000


class Request(NamedTuple):
    """One API call, ready to send: method, path under the base URL, query, JSON body."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


def create_request(create: CreateModel) -> Request:
    """`POST /models` for an already validated create."""
    body = {
        "use_case_id": create.use_case_id,
        "name": create.name,
        "from_model_id": create.from_model_id,
        "train_sample_ids": list(create.train_sample_ids),
        "test_sample_ids": list(create.test_sample_ids),
        "explain_tools": create.explain_tools,
    }
    return Request("POST", "/models", body=dumps(body))


def get_request(model_id: str) -> Request:
    """`GET /models/{id}`; refuses an id that is not 24 characters."""
    return Request("GET", f"/models/{check_model_id(model_id)}")


def list_request(
    use_case_id: str | None = None,
    status: ModelStatus | str | None = None,
    trainable: bool | None = None,
) -> Request:
    """`GET /models` with its optional filters, each checked before anything is sent."""
    params: list[tuple[str, str]] = []
    if use_case_id is not None:
        if not isinstance(use_case_id, str) or not use_case_id.strip():
            raise errors.InvalidRequestError("use_case_id", "must be a non-empty string")
        params.append(("use_case_id", use_case_id))
    if status is not None:
        value = status.value if isinstance(status, ModelStatus) else status
        if value not in _KNOWN_STATUSES:
            raise errors.InvalidRequestError(
                "status", f"must be one of {sorted(_KNOWN_STATUSES)}, got {status!r}"
            )
        params.append(("status", value))
    if trainable is not None:
        if not isinstance(trainable, bool):
            raise errors.InvalidRequestError("trainable", f"must be a bool, got {trainable!r}")
        params.append(("trainable", "true" if trainable else "false"))
    return Request("GET", "/models", params=tuple(params))


def decode_model(
    status: int, headers: Mapping[str, str], body: bytes, request: Request | None = None
) -> Model:
    """A single-model response (create or get) → `Model`, or the matching error."""
    data = _json_payload(status, headers, body, request)
    if not isinstance(data, dict):
        raise _shape_error(status, body, "expected an object", "$")
    return _structure(data, Model, status, body)


@attrs.frozen
class BadItem:
    """One item of a list response that is not a model: where, whose (if readable), why."""

    index: int
    model_id: str | None
    name: str | None
    error: errors.ResponseValidationError


@attrs.frozen
class Listed:
    """A list response, decoded item by item: one bad item spoils nothing else."""

    models: list[Model]
    bad: list[BadItem]


def decode_models(
    status: int, headers: Mapping[str, str], body: bytes, request: Request | None = None
) -> Listed:
    """A list response → its models and its bad items, or the matching error.

    The response as a whole must be a JSON array; each item that does not
    decode is set aside with its error (and its id, if it has a readable one).
    """
    items = decode_list(status, headers, body, request)
    models: list[Model] = []
    bad: list[BadItem] = []
    for index in range(len(items.items)):
        decoded = items.decode(index)
        if isinstance(decoded, BadItem):
            bad.append(decoded)
        else:
            models.append(decoded)
    return Listed(models, bad)


@attrs.frozen
class ListItems:
    """A list response's array, its items not decoded yet (the watcher decodes only changes)."""

    status: int
    body: bytes
    items: list[Any]

    def decode(self, index: int) -> Model | BadItem:
        """Item `index` as a `Model`, or set aside as a `BadItem` (as `decode_models` does)."""
        item = self.items[index]
        try:
            if type(item) is not dict:
                raise TypeError("expected an object")
            return converter.structure(item, Model)
        except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
            error = _item_error(exc, self.status, self.body, index)
            fields = item if isinstance(item, dict) else {}
            model_id, name = fields.get("id"), fields.get("name")
            return BadItem(
                index,
                model_id if isinstance(model_id, str) else None,
                name if isinstance(name, str) else None,
                error,
            )


def decode_list(
    status: int, headers: Mapping[str, str], body: bytes, request: Request | None = None
) -> ListItems:
    """A list response → its items, undecoded, or the matching error (as `decode_models`)."""
    data = _json_payload(status, headers, body, request)
    if not isinstance(data, list):
        raise _shape_error(status, body, "expected an array", "$")
    return ListItems(status, body, data)


def error_for(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    request: Request | None = None,
    now: datetime | None = None,
) -> errors.APIStatusError:
    """The typed error for a non-2xx response to `request`, its message from `{"message"}`.

    `now` (default: the clock) dates a Retry-After given as an HTTP date.
    """
    text = body[:_MAX_BODY_IN_ERROR].decode("utf-8", errors="replace")
    message = _message_from(body) or _reason(status)
    if status == 404 and request is not None and request.path == "/models":
        # the collection itself is missing: the base URL, not a model, is wrong
        message = (
            f"{message}: there is no models endpoint here; "
            "is the base URL right? It should end in /api/v1"
        )
    cls = _ERROR_BY_STATUS.get(status)
    if cls is None:
        cls = errors.ServerError if status >= 500 else errors.APIStatusError
    return cls(
        message,
        status_code=status,
        body=text,
        request_id=header(headers, "x-request-id"),
        retry_after=retry_after_seconds(headers, now or datetime.now(UTC)),
        method=request.method if request is not None else "",
        path=request.path if request is not None else "",
    )


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` (lower case), whatever case the server spelled it in."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """The server's requested wait: `retry-after-ms`, else `Retry-After` (seconds or date)."""
    millis = header(headers, "retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _json_payload(
    status: int, headers: Mapping[str, str], body: bytes, request: Request | None
) -> Any:
    if not 200 <= status < 300:
        raise error_for(status, headers, body, request)
    try:
        return loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _shape_error(status, body, "body is not JSON", "") from None


def _item_error(
    exc: Exception, status: int, body: bytes, index: int
) -> errors.ResponseValidationError:
    if isinstance(exc, cattrs.BaseValidationError):
        first = cattrs.transform_error(exc, path=f"$[{index}]")[0]
        message, _, path = first.rpartition(" @ ")
        return _shape_error(status, body, message or first, path or f"$[{index}]")
    return _shape_error(status, body, "expected an object", f"$[{index}]")


def _structure(data: Any, cls: type[T], status: int, body: bytes) -> T:
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        first = cattrs.transform_error(exc)[0]
        message, _, path = first.rpartition(" @ ")
        raise _shape_error(status, body, message or first, path or "$") from exc


def _shape_error(
    status: int, body: bytes, message: str, path: str
) -> errors.ResponseValidationError:
    text = body[:_MAX_BODY_IN_ERROR].decode("utf-8", errors="replace")
    return errors.ResponseValidationError(
        f"response not in the documented shape: {message}", status_code=status, path=path, body=text
    )


def _message_from(body: bytes) -> str | None:
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) and message else None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
