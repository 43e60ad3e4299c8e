"""The journal's lines: each record's exact shape, checked strictly, in both versions.

Version 2 (this one) names jobs by identity (`["key"]` or `["use_case_id",
"name"]`) and stamps records with the time (`at`, our clock, RFC 3339):

- `header {at}`: the first line;
- `intent {job, at, content}`: about to POST the job (fsynced before the request);
  `content` is a short hash per field, to spot a job changed after it was sent.
  An intent after a `done` opens a new attempt (a retry);
- `created {job, model_id, at}`: the POST returned (or a lookup found) this model;
- `status {job, model_id, status, at}`: the model's status changed;
- `done {job, model, error, at}`: the job is finished: its terminal model, or the
  refusal that proved no model exists.

Version 1 (v0.1) named jobs by their index in a job list fingerprinted in its
header; `migrate_v1` turns its records into version 2 ones for that same list.
Records are checked by hand, not by cattrs: replaying 10,000 jobs stays fast.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from ._jobs import content_digest, job_id
from ._json import dumps, loads
from ._serde import converter
from .types import TrainingJob

__all__: list[str] = []

VERSION: Final = 2
Record = dict[str, Any]
Check = Callable[[Any], Any]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value


def _time(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(_str(value))
    except ValueError:
        raise ValueError(f"not a date-time: {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"a date-time without a time zone: {value!r}")
    return moment


def _job(value: Any) -> tuple[str, ...]:
    if type(value) is list and 0 < len(value) < 3:
        first, last = value[0], value[-1]
        if type(first) is str and type(last) is str and first and last:
            return tuple(value)
    raise TypeError('expected ["key"] or ["use_case_id", "name"]')


def _model(value: Any) -> dict[str, Any] | None:
    if value is not None and not (isinstance(value, dict) and isinstance(value.get("id"), str)):
        raise TypeError("expected a model object with an id, or null")
    return value


def _content(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError("expected an object of field hashes")
    return value


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


_SCHEMAS: Final[dict[int, dict[str, dict[str, Check]]]] = {
    1: {
        "header": {"fingerprint": _str, "jobs": _int},
        "intent": {"job": _int, "at": _time},
        "created": {"job": _int, "model_id": _str},
        "status": {"job": _int, "model_id": _str, "status": _str},
        "done": {"job": _int, "model": _model, "error": _optional(_str)},
    },
    2: {
        "header": {"at": _time},
        "intent": {"job": _job, "at": _time, "content": _content},
        "created": {"job": _job, "model_id": _str, "at": _optional(_time)},
        "status": {"job": _job, "model_id": _str, "status": _str, "at": _optional(_time)},
        "done": {"job": _job, "model": _model, "error": _optional(_str), "at": _optional(_time)},
    },
}


def parse(line: bytes) -> Record:
    """One line as a checked record (`job` a tuple, `at` a datetime); ValueError says why."""
    try:
        data = loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    version = data.get("v")
    schemas = _SCHEMAS.get(version) if type(version) is int else None
    if schemas is None:
        newer = type(version) is int and version > VERSION
        hint = " (written by a newer happyrobot-async: upgrade)" if newer else ""
        raise ValueError(f"unsupported journal version {version!r}{hint}")
    kind = data.get("type")
    schema = schemas.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ValueError(f"unknown record type {kind!r}")
    extra = data.keys() - schema.keys() - {"v", "type"}
    if extra:
        raise ValueError(f"unknown field(s) {', '.join(sorted(extra))} in a {kind} record")
    record: Record = {"v": version, "type": kind}
    for field, check in schema.items():
        if field not in data:
            raise ValueError(f"{kind} record without {field!r}")
        try:
            record[field] = check(data[field])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{field}: {exc}") from None
    return record


def encode(record: Record) -> bytes:
    """A record as its JSON line (with the newline), stamped with this version."""
    data: dict[str, Any] = {"v": VERSION}
    for key, value in record.items():
        if key == "job":
            value = list(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        if key != "v":
            data[key] = value
    return dumps(data) + b"\n"


def jobs_fingerprint(jobs: Sequence[TrainingJob]) -> str:
    """Version 1's digest of a whole job list (order included)."""
    canonical = json.dumps(
        [converter.unstructure(job) for job in jobs], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


#: A v0.1 `done` error that proves no model exists: the POST itself was refused as invalid.
_V1_PROOF = re.compile(r"^POST /models: (400|422)\b")


def migrate_v1(records: Sequence[tuple[int, Record]], jobs: Sequence[TrainingJob]) -> list[Record]:
    """Version 1 records (after its header) as version 2 ones, for the list it was written for.

    v0.1 closed a job on any error; here only a refused POST (400/422) stays
    closed: a 401, 404, 3xx or failed lookup reopens the job, to be reconciled
    or re-watched. Raises ValueError naming the line of a record that fits no job.
    """
    migrated: list[Record] = []
    for number, record in records:
        index = record["job"]
        if not 0 <= index < len(jobs):
            raise ValueError(f"line {number}: job {index} is not in this {len(jobs)}-job list")
        job = jobs[index]
        base: Record = {"type": record["type"], "job": job_id(job)}
        kind = record["type"]
        if kind == "intent":
            migrated.append({**base, "at": record["at"], "content": content_digest(job)})
        elif kind == "created":
            migrated.append({**base, "model_id": record["model_id"], "at": None})
        elif kind == "status":
            status = {"model_id": record["model_id"], "status": record["status"], "at": None}
            migrated.append({**base, **status})
        else:
            error = record["error"]
            if record["model"] is not None or (error is not None and _V1_PROOF.match(error)):
                migrated.append({**base, "model": record["model"], "error": error, "at": None})
    return migrated
