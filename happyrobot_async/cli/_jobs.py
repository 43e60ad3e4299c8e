"""The batch command's jobs file: JSONL or a JSON array (a UTF-8 BOM is fine), checked.

Every problem in a jobs file is reported at once, each a `JobProblem` carrying
its line number, so a user fixes the file in one pass. Each job is checked by
`validate_jobs` on its own, so a problem's `index` maps to a line without ever
reading the message; the one rule across jobs, a unique (use case, name), is
then checked here and worded in lines rather than job indexes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from .._jobs import validate_jobs
from ..errors import InvalidJobsError, JobProblem
from ..types import TrainingJob
from ._common import UsageError

__all__: list[str] = []


@attrs.frozen
class _Entry:
    """One job as read from the file: its position among the jobs, its line, its JSON."""

    index: int
    line: int
    data: Any


def load_jobs(path: Path) -> list[TrainingJob]:
    """Parse and validate a jobs file; `UsageError` lists every bad line by number."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is fine
    except OSError as exc:
        raise UsageError(f"cannot read jobs file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"jobs file {path} is not UTF-8 text") from None
    parse = _json_array if text.lstrip().startswith("[") else _json_lines
    entries, problems = parse(text)
    jobs = _validate(entries, problems)
    if problems:
        problems.sort(key=lambda problem: (problem.line or 0, problem.index))
        listed = "\n".join(f"  {format_problem(problem)}" for problem in problems)
        bad_lines = len({problem.line for problem in problems})
        raise UsageError(f"{path}: {bad_lines} bad job line(s):\n{listed}")
    if not jobs:
        raise UsageError(f"{path} holds no jobs")
    return jobs


def format_problem(problem: JobProblem) -> str:
    """`line N: field: message` (or `job N: ...` when no line is known; no field, no `field:`)."""
    where = f"line {problem.line}" if problem.line is not None else f"job {problem.index}"
    what = f"{problem.field}: {problem.message}" if problem.field else problem.message
    return f"{where}: {what}"


def _validate(entries: Sequence[_Entry], problems: list[JobProblem]) -> list[TrainingJob]:
    """The valid jobs; every problem found is appended to `problems`, with its line."""
    jobs: list[TrainingJob] = []
    first_line: dict[tuple[str, str], int] = {}
    key_line: dict[str, int] = {}
    for entry in entries:
        try:
            (job,) = validate_jobs([entry.data])
        except InvalidJobsError as exc:
            problems += [attrs.evolve(p, index=entry.index, line=entry.line) for p in exc.problems]
            continue
        key = (job.use_case_id, job.name)
        if key in first_line:
            message = f"same use case and name as line {first_line[key]}: {job.name!r}"
            problems.append(JobProblem(entry.index, message, "name", entry.line))
        first_line.setdefault(key, entry.line)
        if job.key is not None:
            if job.key in key_line:
                message = f"same key as line {key_line[job.key]}: {job.key!r}"
                problems.append(JobProblem(entry.index, message, "key", entry.line))
            key_line.setdefault(job.key, entry.line)
        jobs.append(job)
    return jobs


def _json_lines(text: str) -> tuple[list[_Entry], list[JobProblem]]:
    """Each non-blank line is a job."""
    entries: list[_Entry] = []
    problems: list[JobProblem] = []
    index = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(_Entry(index, number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(_syntax(index, number, exc))
        index += 1
    return entries, problems


def _json_array(text: str) -> tuple[list[_Entry], list[JobProblem]]:
    """Each element of a JSON array is a job, found on the line it starts on."""
    decoder = json.JSONDecoder()
    entries: list[_Entry] = []
    position = text.index("[") + 1
    try:
        position = _skip_space(text, position)
        while text[position] != "]":
            element, end = decoder.raw_decode(text, position)
            entries.append(_Entry(len(entries), text.count("\n", 0, position) + 1, element))
            position = _skip_space(text, end)
            if text[position] == ",":
                position = _skip_space(text, position + 1)
            elif text[position] != "]":
                raise json.JSONDecodeError("expected ',' or ']'", text, position)
        if text[position + 1 :].strip():
            raise json.JSONDecodeError("extra data after the array", text, position + 1)
    except json.JSONDecodeError as exc:
        return entries, [_syntax(len(entries), exc.lineno, exc)]
    except IndexError:
        message = "not valid JSON (the array is not closed)"
        return entries, [JobProblem(len(entries), message, line=text.count("\n") + 1)]
    return entries, []


def _syntax(index: int, line: int, exc: json.JSONDecodeError) -> JobProblem:
    return JobProblem(index, f"not valid JSON ({exc.msg} at column {exc.colno})", line=line)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
