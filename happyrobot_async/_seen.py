"""A watched model's last list item, kept compactly, and the cheap test "is it unchanged?".

Pure: no asyncio and no I/O. At 100,000 watched models nearly every list item is
the one seen a cycle before. Structuring each into a `Model` would cost most of the
watcher's CPU, and keeping a `Model` per model most of its memory. So the poll loop
keeps a model's last item as its raw values (`Snapshots.take`), compares the next
item with them (`unchanged`), and structures only an item that differs. A snapshot
turns back into the very same `Model` on demand (`rebuild`).

`unchanged` is exact: the same keys in the same order, values of the same types
that compare equal. Types matter because `True == 1 == 1.0` in Python: a boolean
the server turns into a number is a changed item, decoded (and refused) as any
other. Items holding an array or an object get no snapshot (inside those, equality
is not exact: `[1] == [True]`), so they are structured at every poll, as before.

Memory: the keys and the value types (a `Shape`) are shared by every snapshot of
that shape, the id with the handle, and each other short string goes through a
bounded memo, so a value many models share (status, organization, use case,
source model, a default description) is kept once. A snapshot keeps no more than
its `Model` would: an item with a long string in a field `Model` does not read
gets none.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._serde import converter
from .types import Model

__all__: list[str] = []

#: Strings remembered for sharing at most; past that the memo starts afresh (a bound).
MAX_SHARED_STRINGS = 4096
#: The longest string shared, and the longest kept for a field `Model` does not read:
#: a long value is rarely shared, and one that changes at every poll must not be kept.
MAX_KEPT_LENGTH = 256
#: The item keys `Model` reads; the others only matter for "is it the same item?".
MODEL_KEYS = frozenset(field.name for field in attrs.fields(Model)) - {"raw_status"}
#: Distinct shapes remembered at most (a server has a handful).
MAX_SHAPES = 256
_SCALARS = frozenset({str, int, float, bool, type(None)})

Values = tuple[Any, ...]
Snapshot = tuple["Shape", Values]
"""A list item as kept: its shape and its values (see `Snapshots.take`)."""


class Shape:
    """The keys of an item, in order, and the type of each value; shared by equal shapes."""

    __slots__ = ("keys", "status_at", "types")

    def __init__(self, keys: tuple[str, ...], types: tuple[type, ...]) -> None:
        self.keys = keys
        self.types = types
        self.status_at = keys.index("status")


class Snapshots:
    """Makes snapshots, sharing their shapes and their common strings."""

    def __init__(self) -> None:
        self._shapes: dict[tuple[tuple[str, ...], tuple[type, ...]], Shape] = {}
        self._strings: dict[str, str] = {}

    def share(self, item: dict[str, Any], model_id: str) -> None:
        """Make `item`'s strings the copies kept, in place, before it is structured.

        Each value is replaced by an equal one (so nothing changes but memory): the id
        by `model_id` (the caller's copy), every other string by the memo's copy. The
        `Model` structured from the item, and its snapshot, then share them.
        """
        strings = self._strings
        for key, value in item.items():  # values are replaced, keys untouched: safe
            if type(value) is str and len(value) <= MAX_KEPT_LENGTH:
                if key == "id":
                    if value == model_id:
                        item[key] = model_id
                    continue
                shared = strings.get(value)
                if shared is None:
                    if len(strings) >= MAX_SHARED_STRINGS:
                        strings.clear()
                    shared = strings[value] = value
                item[key] = shared

    def take(self, item: dict[str, Any]) -> Snapshot | None:
        """The snapshot of `item`, which structured into a `Model`; None if it holds an
        array or an object, or a long string in a field `Model` does not read (so a
        snapshot never keeps more than its `Model` would): such an item is
        structured at every poll."""
        values = tuple(item.values())
        types = tuple(map(type, values))
        if not _SCALARS.issuperset(types):
            return None
        keys = tuple(item)
        for key, value in zip(keys, values, strict=True):
            if type(value) is str and len(value) > MAX_KEPT_LENGTH and key not in MODEL_KEYS:
                return None
        shape = self._shapes.get((keys, types))
        if shape is None:
            if len(self._shapes) >= MAX_SHAPES:
                self._shapes.clear()
            shape = self._shapes[keys, types] = Shape(keys, types)
        return shape, values


def unchanged(shape: Shape, values: Values, item: dict[str, Any]) -> bool:
    """True if `item` is exactly the item `values` were taken from (see the module doc)."""
    fresh = tuple(item.values())
    return fresh == values and tuple(item) == shape.keys and tuple(map(type, fresh)) == shape.types


def raw_status(shape: Shape, values: Values) -> str:
    """The server's status string in a snapshot."""
    status: str = values[shape.status_at]
    return status


def rebuild(shape: Shape, values: Values) -> Model:
    """The `Model` the snapshot's item structured into (equal to it, field by field)."""
    return converter.structure(dict(zip(shape.keys, values, strict=True)), Model)
