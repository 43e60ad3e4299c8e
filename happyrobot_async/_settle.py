"""What one polled state means for its handle: the change to emit, and how the handle ends.

Pure: no asyncio and no I/O (time comes in as `at`), so every rule is a table test.

- A change is emitted when the server's raw status differs from the one seen last,
  or at the first sighting. Raw strings are compared, so two statuses this SDK does
  not know (`queued` then `canceled`, both `UNKNOWN`) are still a change. This is
  the one place that decides "did it change"; the schedule is told the answer.
- `active` ends the handle with the model; so does `failed`, unless the handle asked
  for `raise_on_failure`, which ends it with `TrainingFailedError`. Any other
  status, known or not, keeps the model watched.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from .errors import TrainingFailedError
from .types import Model, ModelStatus, StatusChange

__all__: list[str] = []

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
    status = model.status
    if previous is not None and previous.raw_status == model.raw_status:
        if status is not _ACTIVE and status is not _FAILED:
            return KEEP_WATCHING
        change = None
    else:
        change = StatusChange(model, None if previous is None else previous.status, status, at)
    if status is _FAILED and raise_on_failure:
        return Verdict(change, error=TrainingFailedError(model))
    if status is _ACTIVE or status is _FAILED:
        return Verdict(change, result=model)
    return Verdict(change)
