"""The `happyrobot-async` command line: `main` parses the arguments and runs one command.

Each command group lives in its own module and adds its subcommands to the
parser: `_models` (create, get, list, wait), `_batch` (batch), `_demo` (demo)
and `_simulate` (simulate). The simulator (`happyrobot_async.testing`) is
imported only when `demo` or `simulate` runs, so the API commands never load it.

Exit status: 0 success, 1 an API error or a job that did not end active, 2 a
usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import HappyRobotError, InvalidRequestError, JournalError
from ._batch import add_batch
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    add_global_options,
    error,
    forget_secrets,
    logging_to_stderr,
)
from ._demo import add_demo
from ._models import add_create, add_get, add_list, add_wait
from ._simulate import add_simulate

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]

#: Each adds one subcommand; add yours here.
_SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    add_create,
    add_get,
    add_list,
    add_wait,
    add_batch,
    add_demo,
    add_simulate,
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        with logging_to_stderr(args.verbose):
            return command(args)
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    except (InvalidRequestError, JournalError) as exc:
        # refused before anything was done: the command line (or its files) must change
        error(str(exc), one_line=True)
        return EXIT_USAGE
    except HappyRobotError as exc:
        error(f"{type(exc).__name__}: {exc}", one_line=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED
    finally:
        forget_secrets()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="happyrobot-async",
        description=(
            "HappyRobot model-training API tools. The API key comes from "
            "$HAPPYROBOT_API_KEY or --api-key-file (never a command-line argument)."
        ),
    )
    add_global_options(parser, defaults=True)
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser
