"""A batch's jobs: checked before anything is sent (every problem at once), and named.

A job is identified by its `key` when it has one, else by `(use_case_id, name)`:
that identity, not its position, ties a job to its journal records, so a jobs
file can grow, shrink and be reordered between runs. Its content digest (one
short hash per field) tells whether a job changed after its create was sent.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .errors import InvalidJobsError, InvalidRequestError, JobProblem
from .types import TrainingJob

__all__: list[str] = []

JobId = tuple[str, ...]
"""`(key,)` for a job with a key, else `(use_case_id, name)`."""

#: The fields whose change after a create was sent makes a job another job.
CONTENT_FIELDS = (
    "use_case_id",
    "name",
    "from_model_id",
    "train_sample_ids",
    "test_sample_ids",
    "explain_tools",
)


def job_id(job: TrainingJob) -> JobId:
    """The job's identity: its key, else its use case and name."""
    return (job.key,) if job.key is not None else (job.use_case_id, job.name)


def id_label(identity: JobId) -> str:
    """How to name an identity to a person (as `TrainingJob.label` does)."""
    return "/".join(identity)


def content_digest(job: TrainingJob) -> dict[str, str]:
    """A short hash of each content field (sample ids in any order), to spot a changed job."""
    digest = {}
    for field in CONTENT_FIELDS:
        value = getattr(job, field)
        text = repr(sorted(value)) if isinstance(value, tuple) else repr(value)
        digest[field] = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
    return digest


def changed_fields(before: Mapping[str, str], job: TrainingJob) -> list[str]:
    """The content fields of `job` whose digest differs from `before`."""
    now = content_digest(job)
    return [field for field in CONTENT_FIELDS if before.get(field) != now[field]]


def validate_jobs(jobs: Sequence[TrainingJob | Mapping[str, Any]]) -> list[TrainingJob]:
    """Every job checked as `create` checks it; keys and `(use_case_id, name)` unique; at once."""
    problems: list[JobProblem] = []
    valid: list[TrainingJob] = []
    seen: dict[tuple[str, str], int] = {}
    keys: dict[str, int] = {}
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
        pair = (checked.use_case_id, checked.name)
        if pair in seen:
            message = f"same use case and name as job {seen[pair]}: {pair[1]!r}"
            problems.append(JobProblem(index, message, "name"))
        seen.setdefault(pair, index)
        if checked.key is not None:
            if checked.key in keys:
                message = f"same key as job {keys[checked.key]}: {checked.key!r}"
                problems.append(JobProblem(index, message, "key"))
            keys.setdefault(checked.key, index)
        valid.append(checked)
    if problems:
        raise InvalidJobsError(problems)
    return valid


def _shape_problems(index: int, data: object) -> list[JobProblem]:
    """A job given as a mapping: each unknown field (with a guess) and each missing one."""
    if not isinstance(data, Mapping):
        return [JobProblem(index, f"a job must be an object, not {type(data).__name__}")]
    fields = attrs.fields(TrainingJob)
    known = [field.name for field in fields]
    problems = [
        JobProblem(index, _unknown(str(name), known), str(name))
        for name in data
        if name not in known
    ]
    problems += [
        JobProblem(index, "required, missing", field.name)
        for field in fields
        if field.default is attrs.NOTHING and field.name not in data
    ]
    return problems


def _unknown(name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"is not a job field (did you mean {guess[0]!r}?)" if guess else "is not a job field"
