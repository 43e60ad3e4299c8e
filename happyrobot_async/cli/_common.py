"""What every API subcommand shares at run time: the key, the client, errors, logging, output.

One place reads the API key and remembers it, so every line the CLI prints
(errors, notes, debug logs) can be redacted before it leaves the process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._logging import FIELDS
from .._serde import converter
from ..client import HappyRobotClient
from ..types import Model

__all__: list[str] = []

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: What a shell reports for a command its reader left (`| head`): 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141


#: Fields a text log line names after the message (when the message does not show them).
_CONTEXT_FIELDS = ("job_key", "use_case_id", "model_id")
_HIDDEN = "<hidden>"
#: Every secret this process has read; `redact` removes them from anything we print.
_secrets: set[str] = set()


class UsageError(Exception):
    """The command line cannot be acted on (exit 2); the message says why."""


def read_api_key(args: argparse.Namespace) -> str:
    """The key from `--api-key-file`, else `HAPPYROBOT_API_KEY`; remembered for redaction."""
    path: Path | None = args.api_key_file
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read --api-key-file {path}: {exc.strerror}") from None
        if not key:
            raise UsageError(f"--api-key-file {path} is empty")
    else:
        key = os.environ.get("HAPPYROBOT_API_KEY", "").strip()
        if not key:
            raise UsageError(
                "no API key: set HAPPYROBOT_API_KEY or pass --api-key-file PATH "
                "(try `happyrobot-async demo` to see the flow without one)"
            )
    remember_secret(key)
    return key


def make_client(args: argparse.Namespace) -> HappyRobotClient:
    """A client for the options given (the key is read here)."""
    organization = args.organization_id or os.environ.get("HAPPYROBOT_ORGANIZATION_ID", "")
    return HappyRobotClient(
        api_key=read_api_key(args),
        base_url=args.base_url,
        organization_id=organization.strip() or None,
        rate_limit=args.rate_limit,
    )


def remember_secret(secret: str) -> None:
    """Never print `secret`: `redact` and the log filter will hide it."""
    if secret:
        _secrets.add(secret)


def forget_secrets() -> None:
    """Drop remembered secrets (at the end of `main`)."""
    _secrets.clear()


def redact(text: str) -> str:
    """`text` with every remembered secret replaced by <hidden>."""
    for secret in _secrets:
        text = text.replace(secret, _HIDDEN)
    return text


def error(message: str, *, one_line: bool = False) -> None:
    """Print an error on stderr (secrets redacted); `one_line` folds it onto one line."""
    text = redact(message)
    if one_line:
        text = " ".join(text.split())
    print(f"happyrobot-async: error: {text}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """Print an informational line on stderr."""
    print(redact(message), file=sys.stderr, flush=True)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextLogFormatter(logging.Formatter):
    """`time LEVEL message [job_key=.. use_case_id=..]`: who a line is about, secrets hidden."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = [
            f"{name}={value}"
            for name in _CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
            and str(value) not in record.message
        ]
        return f"{line} [{' '.join(context)}]" if context else line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and its structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps({name: _clean(value) for name, value in entry.items()})


def _clean(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


@contextmanager
def logging_to_stderr(verbose: bool, log_format: str = "text") -> Iterator[None]:
    """The SDK's logs on stderr while a command runs: warnings, or everything with -v.

    `HAPPYROBOT_LOG`'s own stderr handler is set aside meanwhile (its level is kept),
    so each record is one line, in the chosen format, with secrets hidden.
    """
    logger = logging.getLogger("happyrobot_async")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactingFilter())
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else TextLogFormatter())
    old_level, old_handlers = logger.level, list(logger.handlers)
    streams = (sys.stderr, sys.__stderr__)
    for other in old_handlers:
        if isinstance(other, logging.StreamHandler) and other.stream in streams:
            logger.removeHandler(other)
    logger.addHandler(handler)
    quiet = min(old_level or logging.WARNING, logging.WARNING)  # HAPPYROBOT_LOG=info is kept
    logger.setLevel(logging.DEBUG if verbose else quiet)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.handlers[:] = old_handlers
        logger.setLevel(old_level)


def model_json(model: Model) -> dict[str, Any]:
    """A model as a JSON-ready dict (the SDK's converter)."""
    data: dict[str, Any] = converter.unstructure(model)
    return data


def print_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    print(json.dumps(data, indent=2, sort_keys=False))


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
