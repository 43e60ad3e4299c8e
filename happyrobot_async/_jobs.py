"""Checking a batch's jobs before anything is sent: every problem of every job, at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .errors import InvalidJobsError, InvalidRequestError, JobProblem
from .types import TrainingJob

__all__: list[str] = []


def validate_jobs(jobs: Sequence[TrainingJob | Mapping[str, Any]]) -> list[TrainingJob]:
    """Every job checked as `create` checks it, and `(use_case_id, name)` unique; all at once."""
    problems: list[JobProblem] = []
    valid: list[TrainingJob] = []
    seen: dict[tuple[str, str], int] = {}
    for index, job in enumerate(jobs):
        shape = [] if isinstance(job, TrainingJob) else _shape_problems(index, job)
        if shape:
            problems += shape
            continue
        try:
            checked = job if isinstance(job, TrainingJob) else TrainingJob(**job)
        except InvalidRequestError as exc:
            problems.append(JobProblem(index, exc.problem, exc.field))
            continue
        key = (checked.use_case_id, checked.name)
        if key in seen:
            problems.append(
                JobProblem(index, f"same use case and name as job {seen[key]}: {key[1]!r}", "name")
            )
        seen.setdefault(key, index)
        valid.append(checked)
    if problems:
        raise InvalidJobsError(problems)
    return valid


def _shape_problems(index: int, data: object) -> list[JobProblem]:
    """A job given as a mapping: each unknown and each missing field, by name."""
    if not isinstance(data, Mapping):
        return [JobProblem(index, f"a job must be an object, not {type(data).__name__}")]
    fields = attrs.fields(TrainingJob)
    known = {field.name for field in fields}
    problems = [
        JobProblem(index, "is not a job field", str(name)) for name in data if name not in known
    ]
    problems += [
        JobProblem(index, "required, missing", field.name)
        for field in fields
        if field.default is attrs.NOTHING and field.name not in data
    ]
    return problems
