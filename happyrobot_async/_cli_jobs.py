"""The batch command's files: a jobs file in (JSONL or a JSON array), results JSONL out.

Every problem in a jobs file is reported at once, each with its line number,
so a user fixes the file in one pass.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._cli_common import UsageError
from .batch import BatchProgress, BatchReport, InvalidJobsError, validate_jobs
from .types import TrainingJob

__all__ = ["load_jobs", "result_rows", "write_results"]

_DUPLICATE = re.compile(r"same use case and name as job (\d+)")


def load_jobs(path: Path) -> list[TrainingJob]:
    """Parse and validate a jobs file; `UsageError` lists every bad line by number."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read jobs file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"jobs file {path} is not UTF-8 text") from None
    if text.lstrip().startswith("["):
        items, problems = _json_array(text)
    else:
        items, problems = _json_lines(text)
    lines = [line for line, _ in items]
    try:
        jobs = validate_jobs([data for _, data in items])
    except InvalidJobsError as exc:
        problems += [(lines[index], _by_line(message, lines)) for index, message in exc.problems]
        jobs = []
    if problems:
        listed = "\n".join(f"  line {line}: {message}" for line, message in sorted(problems))
        raise UsageError(f"{path}: {len(problems)} bad job line(s):\n{listed}")
    if not jobs:
        raise UsageError(f"{path} holds no jobs")
    return jobs


def _json_lines(text: str) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    items: list[tuple[int, Any]] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
    return items, problems


def _json_array(text: str) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """Each element of a JSON array, with the line it starts on."""
    decoder = json.JSONDecoder()
    items: list[tuple[int, Any]] = []
    position = text.index("[") + 1
    try:
        position = _skip_space(text, position)
        while text[position] != "]":
            element, end = decoder.raw_decode(text, position)
            items.append((text.count("\n", 0, position) + 1, element))
            position = _skip_space(text, end)
            if text[position] == ",":
                position = _skip_space(text, position + 1)
            elif text[position] != "]":
                raise json.JSONDecodeError("expected ',' or ']'", text, position)
        if text[position + 1 :].strip():
            raise json.JSONDecodeError("extra data after the array", text, position + 1)
    except json.JSONDecodeError as exc:
        return items, [(exc.lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")]
    except IndexError:
        return items, [(text.count("\n") + 1, "not valid JSON (the array is not closed)")]
    return items, []


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _by_line(message: str, lines: Sequence[int]) -> str:
    """validate_jobs speaks of job indexes; a person editing the file wants line numbers."""
    return _DUPLICATE.sub(lambda m: f"same use case and name as line {lines[int(m[1])]}", message)


def result_rows(report: BatchReport, progress: BatchProgress) -> list[dict[str, Any]]:
    """One JSON-ready row per job, in input order."""
    rows = []
    for result in report.results:
        job = result.job
        model_id = result.model.id if result.model is not None else None
        if model_id is None and result.index < len(progress.jobs):
            model_id = progress.jobs[result.index].model_id
        rows.append(
            {
                "index": result.index,
                "key": job.key,
                "use_case_id": job.use_case_id,
                "name": job.name,
                "model_id": model_id,
                "status": result.model.raw_status if result.model is not None else None,
                "error": str(result.error) if result.error is not None else None,
            }
        )
    return rows


def write_results(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows as JSONL, atomically: readers never see half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, separators=(",", ":")) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
