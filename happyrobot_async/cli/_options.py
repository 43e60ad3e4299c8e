"""How the parsers are built: each subcommand, the options they share, and number checks.

`add_command` adds one subcommand (with the connection options if it calls the
API); `add_global_options`, `add_log_options` and `add_rate_limit` add the
options several commands take; `number_type` makes argparse `type`s that refuse
what is not a number in range.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__: list[str] = []

LOG_FORMATS = ("text", "json")
N = TypeVar("N", int, float)


def add_command(
    subparsers: Subparsers,
    name: str,
    command: Callable[[argparse.Namespace], int],
    text: str,
    *,
    api: bool = False,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Add the subcommand `name`, run by `command`; return its parser.

    `text` is its help, written like a docstring (but a string of its own, which
    `python -OO` keeps): the first paragraph is its line in the list of commands, the
    rest (else that paragraph) the description `--help` shows. `api`: it calls the
    API, so it takes the connection, key, rate and log options. `kwargs` (`epilog`,
    `formatter_class`) go to `add_parser`.
    """
    summary, _, details = inspect.cleandoc(text).partition("\n\n")
    summary = " ".join(summary.split())
    parents = [_api_parent()] if api else []
    parser = subparsers.add_parser(
        name, parents=parents, help=summary, description=details or summary, **kwargs
    )
    parser.set_defaults(command=command)
    return parser


def number_type(
    kind: Callable[[str], N], valid: Callable[[N], bool], must: str
) -> Callable[[str], N]:
    """An argparse `type`: the text as an int or a float (`kind`) for which `valid` holds.

    Refused: "not a whole number: 'x'" (or "not a number"), else "{must}, got {text}".
    """
    what = "whole number" if kind is int else "number"

    def convert(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{must}, got {text}")
        return value

    return convert


#: A count of at least one (`--concurrency`, `--jobs`).
positive_int = number_type(int, lambda value: value >= 1, "must be at least 1")
#: A finite number above 0 (poll intervals, a speed): infinity would plan nothing, ever.
finite_positive = number_type(
    float, lambda value: 0 < value < math.inf, "must be a finite number above 0"
)


def add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The connection, key, rate and log options: on the main parser and each API command.

    Subcommands use SUPPRESS defaults so an option given before the subcommand survives.
    """
    unset: Any = None if defaults else argparse.SUPPRESS
    parser.add_argument(
        "--base-url",
        default=unset,
        metavar="URL",
        help="API root (default: $HAPPYROBOT_BASE_URL, else the public API)",
    )
    parser.add_argument(
        "--api-key-file",
        default=unset,
        type=Path,
        metavar="PATH",
        help="read the API key from this file (default: $HAPPYROBOT_API_KEY; "
        "there is no --api-key: a key in the arguments leaks into shell history)",
    )
    parser.add_argument(
        "--organization-id",
        default=unset,
        metavar="ID",
        help="send requests as this organization (default: $HAPPYROBOT_ORGANIZATION_ID)",
    )
    add_rate_limit(parser, defaults=defaults)
    add_log_options(parser, defaults=defaults)


def add_log_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """`-v` and `--log-format text|json`: how the SDK's logs reach stderr."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="debug logs on stderr",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text" if defaults else argparse.SUPPRESS,
        help="text (default), or json: one JSON object per log line",
    )


#: `--rate-limit`'s type: a finite number above 0.
_requests_per_second = number_type(
    float,
    lambda value: value > 0 and math.isfinite(value),
    "must be a positive number of requests/s",
)


def add_rate_limit(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """`--rate-limit N`: the client's `rate_limit` (requests per second, client-wide)."""
    parser.add_argument(
        "--rate-limit",
        type=_requests_per_second,
        default=None if defaults else argparse.SUPPRESS,
        metavar="N",
        help="send at most N requests per second over the whole command (default: no cap; "
        "a 429 from the server slows the client down anyway)",
    )


def _api_parent() -> argparse.ArgumentParser:
    """A parent parser carrying the global options, for subcommands that call the API."""
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, defaults=False)
    return parent
