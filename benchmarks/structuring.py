"""Structuring: µs per `Model` from a response dict — our converter vs by hand vs pydantic.

In-process, no server. Each repetition times every variant (rotated order) over
the same realistic dicts: a full `GET /models/{id}` body (6 + 2 sample ids) and a
list item (no sample ids), as the simulator renders them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from happyrobot_async._serde import converter
from happyrobot_async.types import Model, ModelStatus

from ._common import fmt, main_for, rotated, summary, table

SAMPLE_IDS = [f"65a1f0c2e4b0a1b2c3d4e{i:03x}" for i in range(8)]
FULL: dict[str, Any] = {
    "id": "65a1f0c2e4b0a1b2c3d4e5f8",
    "created_at": "2024-05-01T12:00:00Z",
    "status": "training",
    "name": "Carrier sales agent v2",
    "organization_id": "65a1f0c2e4b0a1b2c3d4e500",
    "use_case_id": "65a1f0c2e4b0a1b2c3d4e501",
    "description": "Fine-tuned from 65a1f0c2e4b0a1b2c3d4e502",
    "train_sample_ids": SAMPLE_IDS[:6],
    "test_sample_ids": SAMPLE_IDS[6:],
    "from_model_id": "65a1f0c2e4b0a1b2c3d4e502",
    "trainable": False,
    "use_backup_for_generations": False,
    "use_backup_when_idle": False,
}
LIST_ITEM = {k: v for k, v in FULL.items() if not k.endswith("_sample_ids")}


def by_hand(d: dict[str, Any]) -> Model:
    """The floor: build `Model(...)` directly (no type checks beyond what parsing does)."""
    created = datetime.fromisoformat(d["created_at"])
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    train, test = d.get("train_sample_ids"), d.get("test_sample_ids")
    return Model(
        id=d["id"],
        created_at=created,
        status=ModelStatus(d["status"]),
        name=d["name"],
        raw_status=d["status"],
        organization_id=d.get("organization_id"),
        use_case_id=d.get("use_case_id"),
        description=d.get("description"),
        from_model_id=d.get("from_model_id"),
        train_sample_ids=None if train is None else tuple(train),
        test_sample_ids=None if test is None else tuple(test),
        trainable=d.get("trainable", False),
        use_backup_for_generations=d.get("use_backup_for_generations", False),
        use_backup_when_idle=d.get("use_backup_when_idle", False),
        provider=d.get("provider"),
        explain_tools=d.get("explain_tools"),
        compressed=d.get("compressed"),
        compressed_version=d.get("compressed_version"),
    )


def pydantic_model() -> Callable[[dict[str, Any]], Any] | None:
    """A pydantic `BaseModel` of the same fields; None if pydantic is not installed."""
    try:
        from pydantic import BaseModel
    except ImportError:
        return None

    class Status(StrEnum):
        PENDING = "pending"
        TRAINING = "training"
        ACTIVE = "active"
        FAILED = "failed"

    class PModel(BaseModel):
        id: str
        created_at: datetime
        status: Status
        name: str
        organization_id: str | None = None
        use_case_id: str | None = None
        description: str | None = None
        from_model_id: str | None = None
        train_sample_ids: tuple[str, ...] | None = None
        test_sample_ids: tuple[str, ...] | None = None
        trainable: bool = False
        use_backup_for_generations: bool = False
        use_backup_when_idle: bool = False
        provider: str | None = None
        explain_tools: bool | None = None
        compressed: bool | None = None
        compressed_version: str | None = None

    return PModel.model_validate


def variants() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """Every way to turn a dict into a model."""
    found: dict[str, Callable[[dict[str, Any]], Any]] = {
        "ours": lambda d: converter.structure(d, Model),
        "by_hand": by_hand,
    }
    validate = pydantic_model()
    if validate is not None:
        found["pydantic"] = validate
    return found


def time_per_call(function: Callable[[dict[str, Any]], Any], data: dict[str, Any], n: int) -> float:
    """µs per call, over `n` calls."""
    for _ in range(max(1, n // 10)):  # warm up
        function(data)
    started = time.perf_counter()
    for _ in range(n):
        function(data)
    return (time.perf_counter() - started) / n * 1e6


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every repetition times every variant on both dict shapes."""
    found = variants()
    for name, function in found.items():  # all agree on the result
        made = function(FULL)
        assert made.id == FULL["id"] and str(made.status) == "training", name
    assert converter.structure(FULL, Model) == by_hand(FULL)
    shapes = {"full": FULL, "list_item": LIST_ITEM}
    runs: dict[str, dict[str, list[float]]] = {s: {v: [] for v in found} for s in shapes}
    for rep in range(args.repeat):
        for shape, data in shapes.items():
            for name in rotated(list(found), rep):
                runs[shape][name].append(time_per_call(found[name], data, args.iterations))
    rows = []
    for shape in shapes:
        row: dict[str, Any] = {"shape": shape}
        for name in found:
            row[name] = summary(runs[shape][name])
        ours = runs[shape]["ours"]
        for name in found:
            if name != "ours":
                row[f"ours_over_{name}"] = summary(
                    [a / b for a, b in zip(ours, runs[shape][name], strict=True)]
                )
        rows.append(row)
    return {
        "benchmark": "structuring",
        "iterations": args.iterations,
        "repeat": args.repeat,
        "variants": list(found),
        "summary": rows,
    }


LABELS = {
    "ours": "ours (converter)",
    "by_hand": "attrs by hand",
    "pydantic": "pydantic",
}


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    names = result["variants"]
    others = [n for n in names if n != "ours"]
    header = ["dict", *(f"{LABELS[n]} µs" for n in names), *(f"ours / {n}" for n in others)]
    rows = [
        [row["shape"]]
        + [fmt(row[n], 2) for n in names]
        + [fmt(row[f"ours_over_{n}"], 2) for n in others]
        for row in result["summary"]
    ]
    return "\n".join(
        [
            f"{result['iterations']:,} calls per variant per repetition, "
            f"{result['repeat']} repetitions; median (min\u2013max).",
            "",
            table(header, rows),
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes."""
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        args.iterations, args.repeat = 500, 1
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.structuring [--iterations N] [--repeat R]`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, argv)


if __name__ == "__main__":
    raise SystemExit(main())
