"""`create`, `get`, `list`, `wait`: one API call each, human output or `--json`.

Each command opens a client, makes its call and prints the result; `wait`
prints each status change on stderr while it waits, and its exit code tells
active (0), failed (1) and timed out (3) apart, so scripts can branch on it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from ..client import HappyRobotClient
from ..errors import WatchTimeoutError
from ..types import Model, ModelStatus, StatusChange
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    error,
    make_client,
    model_json,
    note,
    plain_table,
    print_json,
)
from ._options import add_command, finite_positive
from ._view import change_line

if TYPE_CHECKING:
    from ._options import Subparsers

__all__: list[str] = []

T = TypeVar("T")
_STATUSES = [status.value for status in ModelStatus if status is not ModelStatus.UNKNOWN]


_CREATE_HELP = """\
Clone a model and start training it.

Clone --from-model-id and train it on the given samples; print the model.
"""


def add_create(subparsers: Subparsers) -> None:
    """`create`: clone a model and start training it."""
    parser = add_command(subparsers, "create", _create, _CREATE_HELP, api=True)
    parser.add_argument("--use-case-id", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--from-model-id", required=True, metavar="MODEL_ID")
    for split, noun in (("train", "training"), ("test", "test")):  # --train/--test-sample-id
        parser.add_argument(
            f"--{split}-sample-id",
            dest=f"{split}_sample_ids",
            action="append",
            required=True,
            metavar="ID",
            help=f"a {noun} sample (repeat for more)",
        )
    parser.add_argument(
        "--no-explain-tools", dest="explain_tools", action="store_false", default=True
    )
    _add_json(parser)


_GET_HELP = "Show one model."


def add_get(subparsers: Subparsers) -> None:
    """`get`: one model."""
    parser = add_command(subparsers, "get", _get, _GET_HELP, api=True)
    parser.add_argument("model_id", metavar="MODEL_ID")
    _add_json(parser)


_LIST_HELP = """\
List models.

List the models the key can see, optionally filtered.
"""


def add_list(subparsers: Subparsers) -> None:
    """`list`: models matching filters."""
    parser = add_command(subparsers, "list", _list, _LIST_HELP, api=True)
    parser.add_argument("--use-case-id")
    parser.add_argument("--status", choices=_STATUSES)
    trainable = parser.add_mutually_exclusive_group()
    trainable.add_argument("--trainable", dest="trainable", action="store_true", default=None)
    trainable.add_argument("--not-trainable", dest="trainable", action="store_false")
    _add_json(parser)


_WAIT_EPILOG = """\
exit codes:
  0    the model ended active
  1    the model ended failed, or an API error (e.g. an unknown MODEL_ID)
  2    usage error (bad arguments, no API key)
  3    --timeout passed before the model finished (it may still finish later)
  130  interrupted (Ctrl-C)"""


_WAIT_HELP = """\
Wait for a model to finish training.

Poll a model until it is active or failed, printing each status change on
stderr; then print the model on stdout.
"""


def add_wait(subparsers: Subparsers) -> None:
    """`wait`: poll one model until it is active or failed."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = add_command(
        subparsers, "wait", _wait, _WAIT_HELP, api=True, epilog=_WAIT_EPILOG, formatter_class=raw
    )
    parser.add_argument("model_id", metavar="MODEL_ID")
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="give up after S seconds (exit 3)"
    )
    parser.add_argument("--poll-interval", type=finite_positive, default=2.0, metavar="S")
    _add_json(parser)


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _create(args: argparse.Namespace) -> int:
    async def call(client: HappyRobotClient) -> Model:
        return await client.models.create(
            use_case_id=args.use_case_id,
            name=args.name,
            from_model_id=args.from_model_id,
            train_sample_ids=args.train_sample_ids,
            test_sample_ids=args.test_sample_ids,
            explain_tools=args.explain_tools,
        )

    _show_model(_call(args, call), args.json)
    return EXIT_OK


def _get(args: argparse.Namespace) -> int:
    _show_model(_call(args, lambda client: client.models.get(args.model_id)), args.json)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    async def call(client: HappyRobotClient) -> list[Model]:
        return await client.models.list(
            use_case_id=args.use_case_id, status=args.status, trainable=args.trainable
        )

    models = _call(args, call)
    if args.json:
        print_json([model_json(model) for model in models])
    elif not models:
        print("No models.")
    else:
        rows = [
            [
                m.id,
                m.raw_status,
                _yes(m.trainable),
                _when(m.created_at),
                m.use_case_id or "-",
                m.name,
            ]
            for m in models
        ]
        print(plain_table(["ID", "STATUS", "TRAINABLE", "CREATED", "USE CASE", "NAME"], rows))
    return EXIT_OK


def _wait(args: argparse.Namespace) -> int:
    def show(change: StatusChange) -> None:
        note(change_line(change, change.model.use_case_id or "-"))

    async def call(client: HappyRobotClient) -> Model | WatchTimeoutError:
        poll = args.poll_interval
        # as client.models.wait, plus on_change; the changes seen are shown before it returns
        async with client.watcher(
            poll_interval=poll, max_poll_interval=max(30.0, poll), on_change=show
        ) as watcher:
            try:
                return await watcher.track(args.model_id, timeout=args.timeout)
            except WatchTimeoutError as timeout:
                return timeout

    outcome = _call(args, call)
    if isinstance(outcome, WatchTimeoutError):
        error(f"{type(outcome).__name__}: {outcome} (--timeout)", one_line=True)
        return EXIT_TIMEOUT
    _show_model(outcome, args.json)
    return EXIT_OK if outcome.status is ModelStatus.ACTIVE else EXIT_FAILED


def _call(args: argparse.Namespace, call: Callable[[HappyRobotClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with make_client(args) as client:
            return await call(client)

    return asyncio.run(run())


def _show_model(model: Model, as_json: bool) -> None:
    if as_json:
        print_json(model_json(model))
        return
    fields: list[tuple[str, object]] = [
        ("id", model.id),
        ("name", model.name),
        ("status", model.raw_status),
        ("use case", model.use_case_id),
        ("from model", model.from_model_id),
        ("created", _when(model.created_at)),
        ("trainable", _yes(model.trainable)),
        ("train samples", _ids(model.train_sample_ids)),
        ("test samples", _ids(model.test_sample_ids)),
        ("explain tools", None if model.explain_tools is None else _yes(model.explain_tools)),
        ("description", model.description),
    ]
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        if value is not None:
            print(f"{label + ':':<{width + 1}} {value}")


def _ids(ids: tuple[str, ...] | None) -> str | None:
    return None if ids is None else ", ".join(ids) or "(none)"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
