"""The one exception tree: everything the SDK raises is a `HappyRobotError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import CreateModel, Model

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousCreateError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "HappyRobotError",
    "InvalidRequestError",
    "JournalError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "ServerError",
    "TrainingFailedError",
    "WatchTimeoutError",
    "WatcherClosedError",
]


class HappyRobotError(Exception):
    """Base of every error this SDK raises."""


class InvalidRequestError(HappyRobotError, ValueError):
    """An argument was refused before anything was sent; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class APIConnectionError(HappyRobotError):
    """The request got no usable HTTP response: refused, dropped, reset or cut short."""

    def __init__(
        self, message: str, *, method: str = "", path: str = "", request_sent: bool = True
    ) -> None:
        super().__init__(f"{method} {path}: {message}" if method else message)
        self.message = message
        self.method = method
        self.path = path
        self.request_sent = request_sent
        """False only when the request surely never reached the server (connect failed)."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """The request did not complete within the client's timeout."""


class APIStatusError(HappyRobotError):
    """The server answered with a status that is not a success."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code}: {message}")
        self.message = message
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After), if it said."""


class BadRequestError(APIStatusError):
    """400 or 422: the server refused the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this (e.g. another organization)."""


class NotFoundError(APIStatusError):
    """404: no such model (or not visible to this key)."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the server's state."""


class RateLimitError(APIStatusError):
    """429 that could not be waited out; `retry_after` is the server's wait in seconds."""


class ServerError(APIStatusError):
    """5xx: the server or a proxy in front of it failed."""


class ResponseValidationError(HappyRobotError):
    """A response body was not the documented shape; `path` points at the bad field."""

    def __init__(self, message: str, *, status_code: int, path: str = "$", body: str = "") -> None:
        super().__init__(f"{message} @ {path}" if path else message)
        self.message = message
        self.status_code = status_code
        self.path = path
        self.body = body


class TrainingFailedError(HappyRobotError):
    """A watched model ended `failed`; `model` is its final state."""

    def __init__(self, model: Model) -> None:
        super().__init__(f"model {model.id} ({model.name!r}) failed training")
        self.model = model


class WatchTimeoutError(HappyRobotError, TimeoutError):
    """A model was not terminal by its deadline; `model` is the last state seen (or None)."""

    def __init__(self, model_id: str, model: Model | None, timeout: float) -> None:
        last = model.raw_status if model is not None else "never seen"
        super().__init__(f"model {model_id} not finished after {timeout:g} s (last: {last})")
        self.model_id = model_id
        self.model = model
        self.timeout = timeout


class WatcherClosedError(HappyRobotError):
    """The watcher was closed while this model was still being followed."""


class JournalError(HappyRobotError):
    """A batch journal cannot be used: corrupt, from another job list, or a newer format."""


class AmbiguousCreateError(HappyRobotError):
    """A create's outcome could not be settled: a model may or may not exist.

    `request` is what was sent; look for it later by name and use case before
    creating it again.
    """

    def __init__(self, request: CreateModel, *, attempts: int, cause: Any = None) -> None:
        super().__init__(
            f"could not tell whether model {request.name!r} was created in use case "
            f"{request.use_case_id} after {attempts} attempt(s); look it up before retrying"
        )
        self.request = request
        self.attempts = attempts
        self.cause = cause
