"""The `happyrobot-async` command line: `main` parses the arguments and runs one command.

Each command group lives in its own module and adds its subcommands to the
parser: `_models` (create, get, list, wait), `_batch` (batch), `_status`
(status), `_report` (report), `_demo` (demo) and `_simulate` (simulate). The
simulator (`happyrobot_async.testing`) is imported only when `demo` or
`simulate` runs, so the API commands never load it; plotly only when a report
is written.

Every parser refuses abbreviated options (`--api-key` is never `--api-key-file`),
refuses `--api-key` itself, and never echoes the value given to an option it does not know.

Exit status: 0 success, 1 an API error or a job that did not end active, 2 a
usage error, 3 `wait --timeout` passed, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from typing import TYPE_CHECKING, Any, NoReturn, cast

from .. import BatchProgress
from .._version import __version__
from ..errors import HappyRobotError, InvalidRequestError, JournalError
from ._batch import add_batch
from ._common import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    error,
    forget_secrets,
    logging_to_stderr,
    redact,
    remember_secret,
)
from ._demo import add_demo
from ._models import add_create, add_get, add_list, add_wait
from ._options import add_global_options
from ._report import add_report
from ._simulate import add_simulate
from ._status import add_status
from ._view import live_view

if TYPE_CHECKING:
    from ._options import Subparsers

__all__ = ["live_progress", "main"]

Command = Callable[[argparse.Namespace], int]

#: Each adds one subcommand; add yours here.
_SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    add_create,
    add_get,
    add_list,
    add_wait,
    add_batch,
    add_status,
    add_report,
    add_demo,
    add_simulate,
]


def live_progress(
    progress: BatchProgress, title: str = "happyrobot-async batch"
) -> AbstractContextManager[None]:
    """The command line's live view of a running batch, for Python users (needs `[cli]`).

    `progress = hr.BatchProgress()`, then
    `with live_progress(progress): await hr.run_batch(client, jobs, progress=progress)`:
    a table of counts per status and a row per running job, refreshed 4 times a second.
    """
    return live_view(progress, title)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        forget_secrets()
        raise
    command: Command = args.command
    try:
        with logging_to_stderr(args.verbose, args.log_format):
            return command(args)
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    except (InvalidRequestError, JournalError) as exc:
        # refused up front, or a journal that could not be kept: the command line, its
        # files or the disk must change before a rerun
        error(str(exc), one_line=True)
        return EXIT_USAGE
    except HappyRobotError as exc:
        error(f"{type(exc).__name__}: {exc}", one_line=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # stdout on a full disk, or what no command expected
        _drop_stdout()
        error(f"{type(exc).__name__}: {exc}", one_line=True)
        return EXIT_FAILED
    finally:
        forget_secrets()


def _drop_stdout() -> None:
    """Stdout failed (its reader left, its disk is full): send what it still buffers nowhere.

    Else Python's flush at exit fails again and prints a traceback (see "Note on
    SIGPIPE" in the `signal` module's documentation). What can still be written is first.
    """
    with suppress(OSError, ValueError):
        sys.stdout.flush()
    with suppress(OSError, ValueError):  # a stdout with no file descriptor (captured)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


#: Shorter values of unknown options are shown: no key is that short, and hiding them
#: would garble the message (every "a" in it hidden).
_SHORTEST_SECRET = 8


class _RefuseApiKey(argparse.Action):
    """`--api-key`: refused without echoing its value (a key in argv leaks; use the env)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if isinstance(values, str):
            remember_secret(values)
        parser.error(
            "--api-key is not accepted (a key in the arguments is visible to other users and "
            "kept in shell history): set HAPPYROBOT_API_KEY or pass --api-key-file PATH"
        )


class _Parser(argparse.ArgumentParser):
    """No prefix matching, no `--api-key`, and the value of an unknown option never echoed.

    Subcommand parsers are of this class too (argparse's `parser_class` default).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        if self.add_help:
            self.add_argument("--api-key", action=_RefuseApiKey, dest="_refused_api_key")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        words = list(sys.argv[1:] if args is None else args)
        for value in _values_of_unknown_options(words, _option_names(self)):
            remember_secret(value)  # `--apikey KEY`: the error names the option, hides KEY
        return super().parse_args(words, namespace)

    def error(self, message: str) -> NoReturn:
        super().error(redact(message))


def _option_names(parser: argparse.ArgumentParser) -> set[str]:
    names = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                names |= _option_names(subparser)
    return names


def _values_of_unknown_options(words: list[str], known: set[str]) -> list[str]:
    """What follows (or is `=`-joined to) an option no parser knows: maybe a secret."""
    values = []
    for index, word in enumerate(words):
        if word == "--":
            break
        name, equals, value = word.partition("=")
        if not word.startswith("-") or name in known or _is_number(word):
            continue
        if equals:
            values.append(value)
        elif index + 1 < len(words) and not words[index + 1].startswith("-"):
            values.append(words[index + 1])
    return [value for value in values if len(value) >= _SHORTEST_SECRET]


def _is_number(word: str) -> bool:
    with suppress(ValueError):
        float(word)
        return True
    return False


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="happyrobot-async",
        description=(
            "HappyRobot model-training API tools. The API key comes from "
            "$HAPPYROBOT_API_KEY or --api-key-file (never a command-line argument)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"happyrobot-async {__version__}")
    add_global_options(parser, defaults=True)
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    # its parsers are _Parser too; the add_* functions need only ArgumentParser's surface
    for add in _SUBCOMMANDS:
        add(cast("Subparsers", subparsers))
    return parser
