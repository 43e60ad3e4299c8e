"""The journal's file handling: one runner's lock, reading lines, rewriting the file.

- `JournalLock`: `fcntl.flock(LOCK_EX | LOCK_NB)` on `<journal>.lock` (beside the file
  a symlinked journal points to), taken before the journal is read and held until
  it is closed; the holder's pid is written into it, so a second runner is told
  who holds it. The kernel drops the lock with its process, so a killed runner
  leaves no stale lock.
- `read_lines`: the journal's lines, with a torn last line (a crash mid-write)
  dropped and cut from the file; `read_records` parses them, header first, and
  `check_versions` that every record is of the header's version.
- `rewrite`: replace the whole file atomically (an upgrade, a new header).

Appending, on a thread of its own, is `_journal_writer`.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ._journal_records import Record, parse
from .errors import JournalError

__all__: list[str] = []


class JournalLock:
    """The exclusive lock of one journal, held by one runner (see the module docstring)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, journal: Path) -> JournalLock:
        """Lock `journal` for this process; `JournalError` naming the holder if another has it."""
        real = Path(os.path.realpath(journal))  # one lock per file, whatever the link to it
        path = real.with_name(real.name + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise JournalError(
                f"journal {journal} is in use by another runner (pid {holder}); "
                "one runner per journal: wait for it to end (or stop it), then rerun"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Let the next runner in (the file stays: removing it would race with one)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def read_lines(path: Path, *, repair: bool, complete: Callable[[bytes], bool]) -> list[bytes]:
    """Every line of `path` (numbered from 1 by position); a torn last line is left out.

    The text after the last newline is a torn write unless `complete(text)`
    says it is a whole record (a hand edit without a final newline): kept,
    and with `repair`, ended with its newline. A torn line is cut from the
    file when `repair`.
    """
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()
    if tail.strip():
        whole = complete(tail)
        if whole:
            lines.append(tail)
        if repair:
            with path.open("r+b") as file:
                if whole:
                    file.seek(len(raw))
                    file.write(b"\n")
                else:
                    file.truncate(len(raw) - len(tail))
                file.flush()
                os.fsync(file.fileno())
    return lines


def read_records(path: Path, *, repair: bool) -> list[tuple[int, Record]]:
    """Each record of the journal with its line number, the header first; [] for an empty file.

    The one reading of the file for the runner and the read-only summary alike:
    `JournalError` names the first line that is not a valid record, or a first
    record that is not a header. Versions are left to `check_versions`, so that
    a caller may first turn away a version it cannot use.
    """
    parsed: list[tuple[int, Record]] = []
    for number, line in enumerate(read_lines(path, repair=repair, complete=_whole), start=1):
        if line.strip():
            try:
                parsed.append((number, parse(line)))
            except ValueError as exc:
                raise JournalError(f"journal {path}: line {number} is not valid: {exc}") from None
    if parsed and parsed[0][1]["type"] != "header":
        raise JournalError(f"journal {path}: line {parsed[0][0]} is not a journal header")
    return parsed


def check_versions(path: Path, parsed: Sequence[tuple[int, Record]]) -> None:
    """`JournalError` at the first record past the header that is a header or of another version."""
    header = parsed[0][1]
    for number, record in parsed[1:]:
        if record["type"] == "header" or record["v"] != header["v"]:
            raise JournalError(
                f"journal {path}: line {number} is not valid: a version {record['v']} "
                f"{record['type']} record in a version {header['v']} journal"
            )


def _whole(line: bytes) -> bool:
    """Whether the text after the last newline is a whole record (see `read_lines`)."""
    try:
        parse(line)
    except ValueError:
        return False
    return True


def rewrite(path: Path, lines: Sequence[bytes]) -> None:
    """Replace `path` with `lines`, atomically and durably (a crash leaves old or new).

    Through a symlink, the file it points to is replaced, and the link kept.
    """
    path = Path(os.path.realpath(path))
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.writelines(lines)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
