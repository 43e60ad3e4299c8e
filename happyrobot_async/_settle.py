"""What one poll means for its handle(s): a state seen (`judge`) or an error (`judge_error`).

Pure: no asyncio and no I/O (time comes in as `at`), so every rule is a table test.

A state seen:

- A change is emitted when the server's raw status differs from the one seen last,
  or at the first sighting. Raw strings are compared, so two statuses this SDK does
  not know (`queued` then `canceled`, both `UNKNOWN`) are still a change. This is
  the one place that decides "did it change"; the schedule is told the answer.
- `active` ends the handle with the model; so does `failed`, unless the handle asked
  for `raise_on_failure`, which ends it with `TrainingFailedError`. Any other
  status, known or not, keeps the model watched.

An error (`judge_error`; the request was one get, or one use case's list):

- Permanent for the model: 404 (`NotFoundError`), 403 (`PermissionDeniedError`),
  400/422 (`BadRequestError`), a get answered with a body that is not that model
  (`ResponseValidationError`), and a local error no retry can cure (an
  `InvalidRequestError` building the request, or any other error raised before
  or after the HTTP exchange). A get's model fails with the error (`FAIL`); a
  list refused that way vouches for none of its models, so each is asked with its
  own get (`ASK_EACH`), which settles or fails it alone.
- About the client, not a model (a plain `HappyRobotError`: closed, its session
  closed by its owner, bound to another event loop): every handle fails (`FAIL_ALL`).
- 401 (`AuthenticationError`): retried, but the `AUTH_FAILURES_TO_GIVE_UP`-th in a row
  (no success between) fails every handle (`FAIL_ALL`). A 401 to a request sent
  before the last 401 arrived (`fresh_401=False`) is the same refusal seen again and
  is not counted. An answer past the key check resets the count.
- A list whose body cannot be read (`ResponseValidationError`: not a list, too
  big) is retried, but the `BAD_LISTS_TO_ASK_EACH`-th in a row asks each model.
- Transient, retried on the schedule's backoff (`RETRY`): timeouts, connection
  errors, 5xx, 429, other statuses. A `retry_after` (429, 503) also pauses all
  polling for that long, capped at `max_retry_after`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal

import attrs

from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    HappyRobotError,
    NotFoundError,
    PermissionDeniedError,
    ResponseValidationError,
    TrainingFailedError,
)
from .types import Model, ModelStatus, StatusChange

__all__: list[str] = []

#: Consecutive polls answered 401 before every handle fails with AuthenticationError.
AUTH_FAILURES_TO_GIVE_UP = 2
#: Unreadable lists of one use case in a row before each of its models is asked alone.
BAD_LISTS_TO_ASK_EACH = 2

_ACTIVE = ModelStatus.ACTIVE
_FAILED = ModelStatus.FAILED


@attrs.frozen
class Verdict:
    """What to do after a poll saw a model: emit `change` (if any), then settle or not."""

    change: StatusChange | None = None
    """The change to emit, or None if the status is the one seen last."""
    result: Model | None = None
    """The final model to end the handle with; None while it is not settled by a model."""
    error: TrainingFailedError | None = None
    """The error to end the handle with; None unless the model failed and that must raise."""


KEEP_WATCHING = Verdict()
"""Nothing changed and nothing ended: the common answer, shared so it costs nothing."""


def judge(previous: Model | None, model: Model, raise_on_failure: bool, at: datetime) -> Verdict:
    """Judge `model`, just polled at `at`, against `previous`, the state seen before it."""
    seen = None if previous is None else previous.raw_status
    return judge_status(seen, model, raise_on_failure, at)


def judge_status(
    previous: str | None, model: Model, raise_on_failure: bool, at: datetime
) -> Verdict:
    """`judge`, told only the raw status seen before (`previous`; None at the first sighting).

    What the poll loop calls: a handle keeps its last state compactly, not as a `Model`.
    """
    status = model.status
    if previous == model.raw_status:
        if status is not _ACTIVE and status is not _FAILED:
            return KEEP_WATCHING
        change = None
    else:
        before = None if previous is None else ModelStatus(previous)
        change = StatusChange(model, before, status, at)
    if status is _FAILED and raise_on_failure:
        return Verdict(change, error=TrainingFailedError(model))
    if status is _ACTIVE or status is _FAILED:
        return Verdict(change, result=model)
    return Verdict(change)


class Action(enum.Enum):
    """What a failed poll does to the handles of the models it polled."""

    RETRY = "retry"
    """Keep them: back off on the schedule and poll again (after the pause, if any)."""
    FAIL = "fail"
    """End the handle of the model got with the error."""
    ASK_EACH = "ask_each"
    """The list vouches for none of its models: ask each with a get of its own."""
    FAIL_ALL = "fail_all"
    """The key is refused: end every handle with the error."""


_PERMANENT = (NotFoundError, PermissionDeniedError, BadRequestError)


@attrs.frozen
class ErrorVerdict:
    """What to do after a poll failed: the action, a pause for everyone, the 401 count."""

    action: Action
    pause: float = 0.0
    """Seconds to hold every poll back (a capped Retry-After); 0 for none."""
    auth_failures: int = 0
    """Polls answered 401 in a row, this one included."""


def judge_error(
    error: BaseException,
    route: Literal["get", "list"],
    auth_failures: int,
    max_retry_after: float,
    *,
    fresh_401: bool = True,
    bad_lists: int = 0,
) -> ErrorVerdict:
    """Judge `error`, raised by a one-shot `route` poll after `auth_failures` 401s in a row.

    `bad_lists`: unreadable lists of this use case in a row before this one.
    """
    if isinstance(error, AuthenticationError):
        if not fresh_401:
            return ErrorVerdict(Action.RETRY, auth_failures=auth_failures)
        failures = auth_failures + 1
        give_up = failures >= AUTH_FAILURES_TO_GIVE_UP
        return ErrorVerdict(Action.FAIL_ALL if give_up else Action.RETRY, auth_failures=failures)
    each = Action.FAIL if route == "get" else Action.ASK_EACH
    if isinstance(error, _PERMANENT):
        return ErrorVerdict(each)
    if isinstance(error, ResponseValidationError):
        if route == "get" or bad_lists + 1 >= BAD_LISTS_TO_ASK_EACH:
            return ErrorVerdict(each)
        return ErrorVerdict(Action.RETRY, auth_failures=auth_failures)
    if isinstance(error, APIStatusError):
        retry_after = error.retry_after
        pause = 0.0 if retry_after is None else max(0.0, min(retry_after, max_retry_after))
        return ErrorVerdict(Action.RETRY, pause, auth_failures)
    if isinstance(error, (APIConnectionError, TimeoutError)):
        return ErrorVerdict(Action.RETRY, auth_failures=auth_failures)
    if type(error) is HappyRobotError:  # about the client: closed, another loop, ...
        return ErrorVerdict(Action.FAIL_ALL, auth_failures=auth_failures)
    return ErrorVerdict(each, auth_failures=auth_failures)
