"""What one use case's list says about the models it was asked for.

Pure: no asyncio and no I/O. Each model the list was asked for is, by its item:

- **same**: its item is exactly the one seen last (`_seen.unchanged`): nothing to
  structure, nothing to report; the schedule is told "unchanged" for all at once;
- **changed** (or new to us): its strings are shared (`Snapshots.share`), then it is
  structured into a `Model`, which goes to `_settle.judge_status`; the handle keeps a
  snapshot of the item for the next comparison;
- **unserved**: no item has its id, or its item is not a model (a `BadItem`): it
  is asked with a get of its own, which settles or fails it alone.

Models no longer followed, or whose own get is out (that get will tell), are
left alone. Items of models nobody asked for are never structured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, NamedTuple

from ._handles import WatchHandle
from ._seen import Snapshot, Snapshots
from ._wire import BadItem, ListItems
from .types import Model

__all__: list[str] = []


class Sorted(NamedTuple):
    """The models a list was asked for, by what their items say."""

    changed: list[tuple[Model, Snapshot | None]]
    """Each changed model, with the snapshot of its item (None: structure it every time)."""
    same: list[str]
    unserved: list[str]
    bad: int
    """How many of the unserved had an item that is not a model."""


def sort_listed(
    model_ids: Sequence[str],
    listed: ListItems,
    handles: Mapping[str, WatchHandle],
    skip: AbstractSet[str],
    snapshots: Snapshots,
) -> Sorted:
    """Sort `model_ids` by their items in `listed` (see the module doc); `skip` their gets out."""
    items = listed.items
    by_id = index_by_id(items)
    changed: list[tuple[Model, Snapshot | None]] = []
    same: list[str] = []
    unserved: list[str] = []
    bad = 0
    for model_id in model_ids:
        index = by_id.get(model_id)
        if index is None:
            unserved.append(model_id)
            continue
        handle = handles.get(model_id)
        if handle is None or (skip and model_id in skip):
            continue
        item = items[index]
        if handle.unchanged(item):
            same.append(model_id)
            continue
        snapshots.share(item, model_id)
        decoded = listed.decode(index)
        if isinstance(decoded, BadItem):
            unserved.append(model_id)
            bad += 1
        else:
            changed.append((decoded, snapshots.take(item)))
    return Sorted(changed, same, unserved, bad)


def index_by_id(items: Sequence[Any]) -> dict[Any, int]:
    """Each item's position by its id (the last wins); items with no id are left out."""
    try:  # the common case, at C speed: every item is an object with an id
        return {item["id"]: index for index, item in enumerate(items)}
    except (TypeError, KeyError):  # an item is not an object, lacks an id, or its id is a list
        pass
    by_id: dict[Any, int] = {}
    for index, item in enumerate(items):
        if type(item) is dict:
            model_id = item.get("id")
            if type(model_id) is str:
                by_id[model_id] = index
    return by_id
