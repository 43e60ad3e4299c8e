"""The exception tree: one root, every class picklable with its attributes."""

from __future__ import annotations

import inspect
import pickle
from datetime import UTC, datetime

import pytest

import happyrobot_async as hr
from happyrobot_async import errors

MODEL = hr.Model(
    id="a" * 24, created_at=datetime(2024, 1, 1, tzinfo=UTC), status=hr.ModelStatus.FAILED, name="m"
)
CREATE = hr.CreateModel(
    use_case_id="uc", name="m", from_model_id="b" * 24, train_sample_ids=["s"], test_sample_ids=[]
)
STATUS = {"status_code": 404, "body": "{}", "request_id": "r", "method": "GET", "path": "/models"}

EXAMPLES: list[hr.HappyRobotError] = [
    hr.HappyRobotError("plain"),
    hr.InvalidRequestError("name", "must not be empty"),
    hr.InvalidJobsError([hr.JobProblem(3, "must not be empty", "name", line=4)]),
    hr.APIConnectionError("lost", method="GET", path="/models", request_sent=False),
    hr.APITimeoutError("timed out", method="POST", path="/models"),
    hr.APIStatusError("teapot", **{**STATUS, "status_code": 418}),
    hr.BadRequestError("bad", **STATUS),
    hr.AuthenticationError("who", **STATUS),
    hr.PermissionDeniedError("no", **STATUS),
    hr.NotFoundError("gone", **STATUS),
    hr.ConflictError("clash", **STATUS),
    hr.RateLimitError("slow down", retry_after=2.5, **STATUS),
    hr.ServerError("oops", **STATUS),
    hr.ResponseValidationError("expected str", status_code=200, path="$.name", body="{}"),
    hr.TrainingFailedError(MODEL),
    hr.WatchTimeoutError(MODEL.id, MODEL, 1.5),
    hr.WatcherClosedError("closed"),
    hr.JournalError("corrupt"),
    hr.AmbiguousCreateError(CREATE, attempts=3, cause=hr.ServerError("x", status_code=500)),
    hr.BatchFailedError(hr.BatchReport(())),
    errors.PreflightError(
        [
            errors.PreflightProblem(
                "the API key was refused (401 Unauthorized)",
                "GET https://api.example.com/api/v1/models?use_case_id=uc",
                ("k1", "k2"),
            )
        ]
    ),
]


def test_examples_cover_every_error_class() -> None:
    """Every exception class defined in errors.py is exercised below."""
    classes = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    }
    assert classes == {type(example) for example in EXAMPLES}
    assert all(issubclass(cls, hr.HappyRobotError) for cls in classes)


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda error: type(error).__name__)
def test_every_error_survives_pickle(error: hr.HappyRobotError) -> None:
    """A round trip through pickle keeps the class, the message and every attribute."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert _comparable(vars(copy)) == _comparable(vars(error))


def _comparable(attributes: dict[str, object]) -> dict[str, object]:
    """Nested errors compare by class and message (exceptions have no value equality)."""
    return {
        key: (type(value), str(value)) if isinstance(value, BaseException) else value
        for key, value in attributes.items()
    }
