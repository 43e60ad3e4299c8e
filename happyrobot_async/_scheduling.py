"""The poll schedule's parts: a model's timing, a use case's models, the timer heap.

Pure, like `_schedule`, their only user: `Schedule` decides intervals and due
times; `Timers` keeps them on a heap with one item per use case (due no later than
its earliest model) and one per model whose use case is unknown, so waking up and
rescheduling a use case's models is one heap operation, not one per model.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable

import attrs

__all__: list[str] = []

#: Compact the heap when stale items outnumber live ones by this factor.
_COMPACT_RATIO = 2
_COMPACT_MIN = 64
_due = operator.attrgetter("due")


@attrs.define(slots=True)
class ModelEntry:
    """One tracked model's use case (None if unknown), next due time and current interval."""

    use_case_id: str | None
    due: float
    interval: float
    seq: int = 0
    """For a model whose use case is unknown: matches its one live heap item."""


@attrs.define(slots=True, eq=False)
class Group:
    """The tracked models of one use case; one heap item stands for all of them."""

    use_case_id: str
    members: dict[str, ModelEntry] = attrs.Factory(dict)
    due: float = float("inf")
    """When the group's live heap item is due: never after its earliest model."""
    seq: int = 0
    """Matches the group's one live heap item; older items are stale."""
    _ids: tuple[str, ...] | None = None

    def add(self, model_id: str, entry: ModelEntry) -> None:
        """Group `model_id` here."""
        self.members[model_id] = entry
        self._ids = None

    def discard(self, model_id: str) -> None:
        """Ungroup `model_id` (no-op if it is not here)."""
        self.members.pop(model_id, None)
        self._ids = None

    def model_ids(self) -> tuple[str, ...]:
        """The members' ids, in the order they were grouped (kept until membership changes)."""
        if self._ids is None:
            self._ids = tuple(self.members)
        return self._ids

    def earliest(self) -> float:
        """When the earliest member is due."""
        return min(map(_due, self.members.values()), default=float("inf"))


HeapItem = tuple[float, int, "str | Group"]
"""(due, seq, a model id or a use case's group); `seq` tells the live item from stale ones."""


class Timers:
    """The timer heap over the models in `entries` (shared with the schedule, which owns it)."""

    def __init__(self, entries: dict[str, ModelEntry]) -> None:
        self.entries = entries
        self.groups: dict[str, Group] = {}
        self._heap: list[HeapItem] = []
        self._seq = 0

    def place(self, model_id: str, entry: ModelEntry) -> None:
        """Put a model on the heap: under its use case's item, or with an item of its own."""
        if entry.use_case_id is None:
            self.push_model(model_id, entry)
            return
        group = self.groups.get(entry.use_case_id)
        if group is None:
            group = self.groups[entry.use_case_id] = Group(entry.use_case_id)
        group.add(model_id, entry)
        self.lower(group, entry.due)

    def leave(self, model_id: str, use_case_id: str) -> None:
        """Take a model out of its use case's group (a group left empty is dropped)."""
        group = self.groups[use_case_id]
        group.discard(model_id)
        if not group.members:
            del self.groups[use_case_id]  # its heap item is dead now

    def set_due(self, model_id: str, entry: ModelEntry, due: float) -> None:
        """Make a tracked model due at `due`."""
        entry.due = due
        if entry.use_case_id is None:
            self.push_model(model_id, entry)
        else:
            self.lower(self.groups[entry.use_case_id], due)

    def push_model(self, model_id: str, entry: ModelEntry) -> None:
        """Give a model whose use case is unknown its (new) live item, at `entry.due`."""
        self._seq = entry.seq = self._seq + 1
        self._push((entry.due, self._seq, model_id))

    def lower(self, group: Group, due: float) -> None:
        """Make the group's item due no later than `due`."""
        if due < group.due:
            self._seq = group.seq = self._seq + 1
            group.due = due
            self._push((due, self._seq, group))

    def refresh(self, group: Group) -> None:
        """Re-arm the group's item at its earliest model (a pass over its models)."""
        earliest = group.earliest()
        if earliest != group.due:
            group.due = float("inf")
            self.lower(group, earliest)

    def rearm(self, group: Group) -> None:
        """Give the group a new item at its earliest model, after `pop_due` took its last one."""
        group.due = float("inf")
        self.refresh(group)

    def pop_due(self, now: float) -> list[HeapItem]:
        """Take the live items due by `now` (a group's may be early: see `next_due`)."""
        heap = self._heap
        items = []
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            if self._live(item):
                items.append(item)
        return items

    def put_back(self, item: HeapItem) -> None:
        """Return an item `pop_due` took, unchanged."""
        heapq.heappush(self._heap, item)

    def next_due(self) -> float | None:
        """When the earliest live item is due; None if there is none.

        A group's item may come due before its earliest model (after a record pushed
        that model later): the schedule then finds nothing due and re-arms it.
        """
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _push(self, item: HeapItem) -> None:
        heapq.heappush(self._heap, item)
        if len(self._heap) > _COMPACT_MIN + _COMPACT_RATIO * len(self.entries):
            self._heap = [item for item in self._heap if self._live(item)]
            heapq.heapify(self._heap)

    def _live(self, item: HeapItem) -> bool:
        _, seq, key = item
        if isinstance(key, str):
            entry = self.entries.get(key)
            return entry is not None and entry.use_case_id is None and entry.seq == seq
        return key.seq == seq and self.groups.get(key.use_case_id) is key


def check_settings(interval: float, max_interval: float, factor: float, jitter: float) -> None:
    """Refuse nonsense intervals, factors and jitters (`ValueError`)."""
    for name, value in (("interval", interval), ("max_interval", max_interval)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    if max_interval < interval:
        raise ValueError(f"max_interval ({max_interval!r}) must be >= interval ({interval!r})")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be within [0, 1), got {jitter!r}")


def grown(memo: dict[float, float], interval: float, factor: float, cap: float) -> float:
    """`min(interval * factor, cap)`, one float object per distinct value (kept in `memo`).

    The memo stays small: every interval is the base one times `factor**k`, or the cap.
    """
    value = memo.get(interval)
    if value is None:
        value = memo[interval] = min(interval * factor, cap)
    return value


def later(now: float) -> Callable[[float], float]:
    """`interval -> now + interval`, one float object per distinct interval.

    A use case's models, rescheduled together, mostly share one interval: they then
    share one due-time float too.
    """
    memo: dict[float, float] = {}

    def at(interval: float) -> float:
        due = memo.get(interval)
        if due is None:
            due = memo[interval] = now + interval
        return due

    return at
