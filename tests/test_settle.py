"""What a poll means for its handle: the pure `judge` and `judge_error`, no network, no asyncio."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import pytest

import happyrobot_async as hr
from happyrobot_async._settle import (
    KEEP_WATCHING,
    Action,
    ErrorVerdict,
    judge,
    judge_error,
    judge_status,
)

S = hr.ModelStatus
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
#: the handle's outcome: keep watching, end with the model, or end with TrainingFailedError
WATCH, RESULT, ERROR = "watch", "result", "error"


def model(raw_status: str) -> hr.Model:
    """A model whose server status string is `raw_status`."""
    return hr.Model(
        id="a" * 24,
        created_at=AT,
        status=S(raw_status),
        name="carrier sales",
        raw_status=raw_status,
    )


# (status seen before or None, status polled now, raise_on_failure,
#  change emitted as (previous, current) or None, how the handle settles)
TABLE = [
    pytest.param(None, "pending", False, (None, S.PENDING), WATCH, id="first sighting"),
    pytest.param("pending", "pending", False, None, WATCH, id="unchanged"),
    pytest.param("pending", "pending", True, None, WATCH, id="unchanged, raising"),
    pytest.param("pending", "training", False, (S.PENDING, S.TRAINING), WATCH, id="training"),
    pytest.param("training", "active", False, (S.TRAINING, S.ACTIVE), RESULT, id="active"),
    pytest.param("training", "active", True, (S.TRAINING, S.ACTIVE), RESULT, id="active, raising"),
    pytest.param("training", "failed", False, (S.TRAINING, S.FAILED), RESULT, id="failed"),
    pytest.param("training", "failed", True, (S.TRAINING, S.FAILED), ERROR, id="failed, raising"),
    pytest.param(None, "active", False, (None, S.ACTIVE), RESULT, id="active at first sight"),
    pytest.param(None, "failed", True, (None, S.FAILED), ERROR, id="failed at first sight"),
    pytest.param("active", "active", False, None, RESULT, id="active seen again"),
    pytest.param("failed", "failed", True, None, ERROR, id="failed seen again, raising"),
    pytest.param("training", "queued", False, (S.TRAINING, S.UNKNOWN), WATCH, id="to unknown"),
    pytest.param("queued", "queued", False, None, WATCH, id="unknown, unchanged"),
    pytest.param("queued", "canceled", False, (S.UNKNOWN, S.UNKNOWN), WATCH, id="raw compared"),
    pytest.param("queued", "active", False, (S.UNKNOWN, S.ACTIVE), RESULT, id="unknown to active"),
    pytest.param("training", "pending", False, (S.TRAINING, S.PENDING), WATCH, id="backwards"),
]


@pytest.mark.parametrize(("before", "now", "raise_on_failure", "change", "settles"), TABLE)
def test_judge(
    before: str | None,
    now: str,
    raise_on_failure: bool,
    change: tuple[hr.ModelStatus | None, hr.ModelStatus] | None,
    settles: str,
) -> None:
    """A new raw status emits one change; active and failed settle; failed raises if asked.

    The poll loop's `judge_status`, told only the raw status seen before, judges alike.
    """
    polled = model(now)
    verdict = judge(None if before is None else model(before), polled, raise_on_failure, AT)
    told_status = judge_status(before, polled, raise_on_failure, AT)
    assert (told_status.change, told_status.result) == (verdict.change, verdict.result)
    assert type(told_status.error) is type(verdict.error)
    if change is None:
        assert verdict.change is None
    else:
        assert verdict.change == hr.StatusChange(polled, change[0], change[1], AT)
    if settles == WATCH:
        assert (verdict.result, verdict.error) == (None, None)
    elif settles == RESULT:
        assert (verdict.result, verdict.error) == (polled, None)
    else:
        assert verdict.result is None
        assert isinstance(verdict.error, hr.TrainingFailedError)
        assert verdict.error.model is polled


def test_the_common_answer_is_shared() -> None:
    """An unchanged, unfinished model gets the one shared verdict, so polls allocate nothing."""
    assert judge(model("training"), model("training"), False, AT) is KEEP_WATCHING
    assert judge(model("training"), model("active"), False, AT) is not KEEP_WATCHING


# -- what a failed poll means: the pure `judge_error` -----------------------------------

CAP = 120.0


def status(cls: type[hr.APIStatusError], code: int, retry_after: float | None = None) -> Exception:
    """A status error as the client raises it for a `code` response."""
    return cls("refused", status_code=code, retry_after=retry_after)


A = Action
# (error, route, 401s in a row before, action, pause, 401s in a row after)
ERRORS = [
    pytest.param(status(hr.NotFoundError, 404), "get", 1, A.FAIL, 0, 0, id="404 get"),
    pytest.param(status(hr.NotFoundError, 404), "list", 0, A.ASK_EACH, 0, 0, id="404 list"),
    pytest.param(status(hr.PermissionDeniedError, 403), "get", 0, A.FAIL, 0, 0, id="403 get"),
    pytest.param(status(hr.PermissionDeniedError, 403), "list", 1, A.ASK_EACH, 0, 0, id="403 list"),
    pytest.param(
        status(hr.PermissionDeniedError, 403, 5.0), "get", 0, A.FAIL, 0, 0, id="403 wins over wait"
    ),
    pytest.param(status(hr.BadRequestError, 400), "get", 0, A.FAIL, 0, 0, id="400 get"),
    pytest.param(status(hr.BadRequestError, 422), "get", 0, A.FAIL, 0, 0, id="422 get"),
    pytest.param(status(hr.BadRequestError, 422), "list", 0, A.ASK_EACH, 0, 0, id="422 list"),
    pytest.param(
        hr.ResponseValidationError("bad", status_code=200), "get", 1, A.FAIL, 0, 0, id="bad get"
    ),
    pytest.param(
        hr.ResponseValidationError("bad", status_code=200),
        "list",
        1,
        A.RETRY,
        0,
        1,
        id="list not a list",
    ),
    pytest.param(status(hr.AuthenticationError, 401), "get", 0, A.RETRY, 0, 1, id="first 401"),
    pytest.param(status(hr.AuthenticationError, 401), "list", 1, A.FAIL_ALL, 0, 2, id="second 401"),
    pytest.param(status(hr.ServerError, 500), "get", 1, A.RETRY, 0, 1, id="500"),
    pytest.param(status(hr.ServerError, 503, 5.0), "list", 0, A.RETRY, 5.0, 0, id="503 wait"),
    pytest.param(status(hr.RateLimitError, 429, 2.5), "get", 0, A.RETRY, 2.5, 0, id="429 wait"),
    pytest.param(
        status(hr.RateLimitError, 429, 86400.0), "list", 0, A.RETRY, CAP, 0, id="429 wait capped"
    ),
    pytest.param(status(hr.RateLimitError, 429), "get", 0, A.RETRY, 0, 0, id="429 no wait"),
    pytest.param(status(hr.RateLimitError, 429, 0.0), "get", 0, A.RETRY, 0, 0, id="429 wait 0"),
    pytest.param(status(hr.ConflictError, 409), "get", 0, A.RETRY, 0, 0, id="409"),
    pytest.param(status(hr.APIStatusError, 410), "get", 0, A.RETRY, 0, 0, id="other status"),
    pytest.param(hr.APITimeoutError("timed out"), "get", 1, A.RETRY, 0, 1, id="timeout"),
    pytest.param(hr.APIConnectionError("reset"), "list", 0, A.RETRY, 0, 0, id="connection"),
    pytest.param(hr.APITimeoutError("timed out"), "list", 1, A.RETRY, 0, 1, id="list timeout"),
    pytest.param(TimeoutError(), "get", 1, A.RETRY, 0, 1, id="poll deadline"),
    pytest.param(RuntimeError("a bug"), "get", 1, A.FAIL, 0, 1, id="not ours get"),
    pytest.param(RuntimeError("a bug"), "list", 0, A.ASK_EACH, 0, 0, id="not ours list"),
    pytest.param(
        hr.InvalidRequestError("model_id", "bad"), "get", 0, A.FAIL, 0, 0, id="bad id get"
    ),
    pytest.param(
        hr.InvalidRequestError("use_case_id", "blank"),
        "list",
        1,
        A.ASK_EACH,
        0,
        1,
        id="list not buildable",
    ),
    pytest.param(hr.HappyRobotError("closed"), "get", 0, A.FAIL_ALL, 0, 0, id="client closed"),
    pytest.param(
        hr.HappyRobotError("another event loop"), "list", 1, A.FAIL_ALL, 0, 1, id="other loop"
    ),
    pytest.param(
        hr.TrainingFailedError(model("failed")), "get", 0, A.FAIL, 0, 0, id="other of ours"
    ),
]


@pytest.mark.parametrize(("error", "route", "before", "action", "pause", "after"), ERRORS)
def test_judge_error(
    error: Exception,
    route: Literal["get", "list"],
    before: int,
    action: Action,
    pause: float,
    after: int,
) -> None:
    """Refusals about the model fail it (a list asks each), 401 twice fails all, else retry."""
    assert judge_error(error, route, before, CAP) == ErrorVerdict(action, pause, after)


def test_a_stale_401_is_not_counted() -> None:
    """A 401 to a request sent before the last 401 arrived is the same refusal: not counted."""
    error = status(hr.AuthenticationError, 401)
    verdict = judge_error(error, "get", 1, CAP, fresh_401=False)
    assert verdict == ErrorVerdict(A.RETRY, 0, 1)


@pytest.mark.parametrize(("before", "action"), [(0, A.RETRY), (1, A.ASK_EACH), (5, A.ASK_EACH)])
def test_an_unreadable_list_asks_each_once_it_failed_twice(before: int, action: Action) -> None:
    """A list that fails to decode twice in a row is given up: each model is asked alone."""
    error = hr.ResponseValidationError("not a list", status_code=200)
    assert judge_error(error, "list", 0, CAP, bad_lists=before).action is action
