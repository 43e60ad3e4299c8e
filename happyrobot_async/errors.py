"""The one exception tree: everything the SDK raises is a `HappyRobotError`.

This is the lowest layer: it imports nothing else of the package. Errors that
carry a model, a create or a batch report describe what they need of it with a
`Protocol`, so no import ever points upwards.

Every class survives `pickle` (multiprocessing, task queues): `__reduce__`
rebuilds an error from its message and attributes, whatever its `__init__`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Protocol

import attrs

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousCreateError",
    "AuthenticationError",
    "BadRequestError",
    "BatchFailedError",
    "ConflictError",
    "HappyRobotError",
    "InvalidJobsError",
    "InvalidRequestError",
    "JobProblem",
    "JournalError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreflightError",
    "PreflightProblem",
    "RateLimitError",
    "ResponseValidationError",
    "ServerError",
    "TrainingFailedError",
    "WatchTimeoutError",
    "WatcherClosedError",
]


class ModelLike(Protocol):
    """What an error needs of a `Model` (the real one is in `types`)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def raw_status(self) -> str: ...


class CreateLike(Protocol):
    """What an error needs of a `CreateModel`."""

    @property
    def name(self) -> str: ...
    @property
    def use_case_id(self) -> str: ...


class ReportLike(Protocol):
    """What an error needs of a `BatchReport`."""

    @property
    def failed(self) -> int: ...
    def __len__(self) -> int: ...


def _restore(cls: type[BaseException], args: tuple[Any, ...]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    return error


class HappyRobotError(Exception):
    """Base of every error this SDK raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The attributes are the state pickle sets after making the error, so one that
        # leads back to the error itself (a cycle) finds it made, never half-built.
        return (_restore, (type(self), self.args), self.__dict__)


class InvalidRequestError(HappyRobotError, ValueError):
    """An argument was refused before anything was sent; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@attrs.frozen
class JobProblem:
    """One problem with one job of a batch: where it is, which field, what is wrong."""

    index: int
    """The job's position in the list given (0-based)."""
    message: str
    field: str | None = None
    line: int | None = None
    """The line of the jobs file, when the jobs came from one."""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"job {self.index}"
        return f"{where}: {self.message}"


class InvalidJobsError(InvalidRequestError):
    """Some jobs of a batch are invalid; `problems` lists every one of them."""

    def __init__(self, problems: list[JobProblem] | tuple[JobProblem, ...]) -> None:
        listed = "; ".join(str(problem) for problem in problems)
        super().__init__("jobs", f"{len(problems)} problem(s): {listed}")
        self.problems = tuple(problems)


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
    """The server answered with a status that is not a success; `method`/`path` say to what."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(_describe(status_code, message, method, path, request_id))
        self.message = message
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After), if it said."""
        self.method = method
        self.path = path


def _describe(status: int, message: str, method: str, path: str, request_id: str | None) -> str:
    """`GET /models/x: 404 Not Found: no such model (request id r1)`, each part if known."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    text = f"{status} {reason}".rstrip()
    if message and message != reason:
        text += f": {message}"
    if method:
        text = f"{method} {path}: {text}"
    if request_id:
        text += f" (request id {request_id})"
    return text


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
    """A watched model ended `failed`; `model` is its final state (a `Model`)."""

    def __init__(self, model: ModelLike) -> None:
        super().__init__(f"model {model.id} ({model.name!r}) failed training")
        self.model: Any = model


class WatchTimeoutError(HappyRobotError, TimeoutError):
    """A model was not terminal by its deadline; `model` is the last `Model` seen (or None)."""

    def __init__(self, model_id: str, model: ModelLike | None, timeout: float) -> None:
        last = model.raw_status if model is not None else "never seen"
        super().__init__(f"model {model_id} not finished after {timeout:g} s (last: {last})")
        self.model_id = model_id
        self.model: Any = model
        self.timeout = timeout


class WatcherClosedError(HappyRobotError):
    """The watcher was closed while this model was still being followed."""


class JournalError(HappyRobotError):
    """A batch journal cannot be used: corrupt, from another job list, or a newer format."""


@attrs.frozen
class PreflightProblem:
    """One setup mistake found before a batch sent anything: what is wrong, and where."""

    message: str
    url: str
    """The request that showed it (`GET https://.../models?use_case_id=...`)."""
    jobs: tuple[str, ...] = ()
    """The jobs it would break (their labels), when it concerns some jobs only."""

    def __str__(self) -> str:
        shown = ", ".join(self.jobs[:5]) + (", ..." if len(self.jobs) > 5 else "")
        affected = f" (job(s) {shown})" if self.jobs else ""
        return f"{self.message}{affected}: {self.url}"


class PreflightError(HappyRobotError):
    """A batch's preflight failed; nothing was created. `problems` lists every one found."""

    def __init__(self, problems: list[PreflightProblem] | tuple[PreflightProblem, ...]) -> None:
        listed = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"preflight: {len(problems)} problem(s), no model was created:{listed}")
        self.problems = tuple(problems)


class AmbiguousCreateError(HappyRobotError):
    """A create's outcome could not be settled: a model may or may not exist.

    `request` is the `CreateModel` sent; look for it later by name and use case
    before creating it again.
    """

    def __init__(self, request: CreateLike, *, attempts: int, cause: Any = None) -> None:
        super().__init__(
            f"could not tell whether model {request.name!r} was created in use case "
            f"{request.use_case_id} after {attempts} attempt(s); look it up before retrying"
        )
        self.request: Any = request
        self.attempts = attempts
        self.cause = cause


class BatchFailedError(HappyRobotError):
    """`raise_on_failure=True` and some jobs did not end `active`; `report` has them all."""

    def __init__(self, report: ReportLike) -> None:
        super().__init__(f"{report.failed} of {len(report)} job(s) did not end active")
        self.report: Any = report
