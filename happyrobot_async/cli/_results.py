"""`batch --out`: a row per job as it finishes, then the whole file in input order.

The path is checked before anything is sent. While the batch runs, each job
that ends gets its row appended and flushed; at the end (a Ctrl-C and
`--fail-fast` included) the file is rewritten atomically with one row per job,
in input order, unfinished jobs saying so. `.csv` writes CSV, anything else
JSON lines. A write that fails (a full disk) stops the batch: the journal holds
every result, so a rerun resumes and writes the file again.

Through a symlink, the file it names is written and replaced, never the link. A
stream cannot be rewritten: a path that is no regular file (`/dev/stdout`, a
FIFO) or that is this process's stdout or stderr (`--out /dev/stdout >> log`) is
appended to, a row per job as it ends, then one for each job that did not. A
FIFO must have its reader already. `--out` may not be the journal or the jobs.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import BatchProgress, JobProgress, JobStage
from ._common import UsageError

__all__: list[str] = []

COLUMNS = (
    "index",
    "key",
    "use_case_id",
    "name",
    "from_model_id",
    "model_id",
    "status",
    "error",
    "attempts",
    "created_at",
    "finished_at",
    "pending_seconds",
    "training_seconds",
    "history",
)


def result_row(index: int, row: JobProgress) -> dict[str, Any]:
    """One job's row, from what the batch knows of it now."""
    job = row.job
    finished = row.stage in (JobStage.FINISHED, JobStage.ERROR)
    error = row.error
    if not finished:
        error = f"not finished ({row.state}): rerun to resume"
    pending, training = row.durations()
    return {
        "index": index,
        "key": job.key,
        "use_case_id": job.use_case_id,
        "name": job.name,
        "from_model_id": job.from_model_id,
        "model_id": row.model_id,
        "status": row.model_status if row.stage is JobStage.FINISHED else None,
        "error": error,
        "attempts": row.attempts,
        "created_at": _stamp(row.created_at),
        "finished_at": _stamp(row.finished_at) if finished else None,
        "pending_seconds": _round(pending),
        "training_seconds": _round(training),
        "history": list(row.history),
    }


class ResultsFile:
    """The `--out` file of one run (see the module docstring)."""

    def __init__(self, path: Path, *, not_these: Mapping[str, Path] = MappingProxyType({})) -> None:
        """Check `path` (and open it, if a stream); `not_these`: other files of the run, by
        the option naming them, that `--out` must not be (the journal, the jobs)."""
        self.path = path
        self.csv = path.suffix.lower() == ".csv"
        self.error: OSError | None = None
        """Set when a write failed; the batch is stopped and the file left as it is."""
        self._written: set[int] = set()
        self._file: io.TextIOWrapper | None = None
        self._header = self.csv
        try:
            found = os.stat(path)  # through links: a loop is refused here
        except FileNotFoundError:
            found = None
        except OSError as exc:
            raise UsageError(f"--out {path}: {exc.strerror or exc}") from None
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise UsageError(f"--out {path} is a folder, not a file")
        for option, other in not_these.items():
            if _same(path, found, other):
                raise UsageError(f"--out {path} is {option}: it would be overwritten")
        self._stream = found is not None and (
            not stat.S_ISREG(found.st_mode) or _is_our_output(found)
        )
        if self._stream:
            self._target = path  # /dev/stdout resolves to names that cannot be opened
            self._file = _open_stream(path)
            return
        self._target = path = Path(os.path.realpath(path))
        parent = path.parent
        if not parent.is_dir():
            raise UsageError(f"--out {path}: folder {parent} does not exist")
        target = path if path.exists() else parent
        if not os.access(target, os.W_OK):
            raise UsageError(f"--out {path}: not writable")

    def add(self, index: int, row: JobProgress) -> bool:
        """Append one finished job's row and flush; False once a write has failed.

        The first row empties the file (a CSV header first): until a job of this
        run ends, the file of the previous run is left as it was.
        """
        if self.error is not None:
            return False
        try:
            if self._file is None:
                self._file = self._target.open("w", encoding="utf-8", newline="")
            if self._header:
                self._file.write(_csv_line(COLUMNS))
                self._header = False
            self._file.write(self._line(result_row(index, row)))
            self._file.flush()
        except OSError as exc:
            self.error = exc
            return False
        self._written.add(index)
        return True

    def finish(self, progress: BatchProgress) -> None:
        """Rewrite the whole file in input order (unless a write failed: it stays as it was).

        A stream gets a row for each job it has none for yet, instead.
        """
        if self._stream:
            for index, row in enumerate(progress.jobs):
                if index not in self._written:
                    self.add(index, row)
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self.error = self.error or exc
        if self.error is not None:
            raise UsageError(self._why(self.error))
        if self._stream:
            return
        rows = [result_row(index, row) for index, row in enumerate(progress.jobs)]
        try:
            write_rows(self._target, rows, as_csv=self.csv)
        except OSError as exc:
            raise UsageError(self._why(exc)) from None

    def _line(self, row: dict[str, Any]) -> str:
        if self.csv:
            return _csv_line(_csv_values(row))
        return json.dumps(row, separators=(",", ":")) + "\n"

    def _why(self, exc: OSError) -> str:
        return (
            f"cannot write --out {self.path}: {exc.strerror or exc}; nothing is lost (the "
            "journal has every result): rerun the same command to resume and write it again"
        )


def _same(path: Path, found: os.stat_result | None, other: Path) -> bool:
    """Whether `path` (whose `os.stat` is `found`) is the file `other` is, or will be."""
    if found is not None:
        with suppress(OSError):
            theirs = os.stat(other)
            return (found.st_dev, found.st_ino) == (theirs.st_dev, theirs.st_ino)
    return os.path.realpath(path) == os.path.realpath(other)


def _is_our_output(found: os.stat_result) -> bool:
    """Whether `found` is the file this process's stdout or stderr writes to."""
    for fd in (1, 2):
        with suppress(OSError):
            ours = os.fstat(fd)
            if (ours.st_dev, ours.st_ino) == (found.st_dev, found.st_ino):
                return True
    return False


def _open_stream(path: Path) -> io.TextIOWrapper:
    """Open a stream to append to; a FIFO with no reader is refused, not waited for."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UsageError(f"--out {path}: a FIFO nobody reads yet") from None
        raise UsageError(f"--out {path}: {exc.strerror or exc}") from None
    os.set_blocking(fd, True)
    return open(fd, "a", encoding="utf-8", newline="")


def write_rows(path: Path, rows: Sequence[dict[str, Any]], *, as_csv: bool) -> None:
    """Write rows as JSONL or CSV, atomically: readers never see half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as file:
            if as_csv:
                file.write(_csv_line(COLUMNS))
                file.writelines(_csv_line(_csv_values(row)) for row in rows)
            else:
                file.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def _csv_values(row: dict[str, Any]) -> list[str]:
    values = []
    for column in COLUMNS:
        value = row[column]
        if isinstance(value, list):
            value = " ".join(value)
        values.append("" if value is None else str(value))
    return values


def _csv_line(values: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _round(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None
