"""The pure poll scheduler: who is due, grouped into requests, and when to wake next.

No asyncio and no I/O: time comes in as a float `now` (any monotonic clock), and
randomness from an injectable `random.Random`, so every decision is testable.

Rules:

- A model is first due when tracked, except one that joins a use case that already
  has tracked models: that one is due within one base interval, and in practice
  rides along the use case's next list (so a trickle of new models does not cost
  one list request each).
- `plan(now)` takes the due models and groups them: a use case with two or more
  tracked models costs one list poll that covers *every* tracked model of that use
  case, due or not; a lone model, or one whose use case is unknown, costs one get.
  Planned models are rescheduled one current interval ahead, so a poll that never
  reports back delays a model but never loses it.
- `record(id, changed, now)` stores what a poll found: a changed status (whether
  it changed is `_settle`'s finding, not the schedule's) resets the interval to
  `interval`, an unchanged one grows it by `factor` up to `max_interval`. The next
  due time is `now` plus the interval, jittered by ±`jitter` (never above the cap)
  for a lone model. A use case's models are not jittered: they share one list
  anyway, and each drawing its own jitter would only pull that list earlier (the
  earliest of many draws is about `interval * (1 - jitter)`).
- `pause_until(t)` holds every poll back until `t` (a server's Retry-After);
  `hold(ids, now)` puts off polls planned before the pause began to its end.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from typing import Literal

import attrs

__all__: list[str] = []

#: Compact the heap when stale items outnumber live ones by this factor.
_COMPACT_RATIO = 2
_COMPACT_MIN = 64


@attrs.frozen
class Poll:
    """One request to make: list a use case (covering `model_ids`) or get one model."""

    kind: Literal["list", "get"]
    model_ids: tuple[str, ...]
    use_case_id: str | None = None

    @classmethod
    def list(cls, use_case_id: str, model_ids: tuple[str, ...]) -> Poll:
        """A `GET /models?use_case_id=…` refreshing every model in `model_ids`."""
        return cls("list", model_ids, use_case_id)

    @classmethod
    def get(cls, model_id: str) -> Poll:
        """A `GET /models/{id}`."""
        return cls("get", (model_id,))


@attrs.define(slots=True)
class _Entry:
    use_case_id: str | None
    due: float
    interval: float
    seq: int = 0
    """Matches the one live heap item for this model; older items are stale."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.define(on_setattr=attrs.setters.NO_OP)  # settings are checked once; no per-write hook
class Schedule:
    """Per-model due times and intervals for every tracked model."""

    interval: float = attrs.field(default=2.0, validator=_positive)
    max_interval: float = attrs.field(default=30.0, validator=_positive)
    factor: float = attrs.field(default=1.5)
    jitter: float = attrs.field(default=0.1)
    rng: random.Random = attrs.field(factory=random.Random)
    _entries: dict[str, _Entry] = attrs.field(init=False, factory=dict)
    _by_use_case: dict[str, dict[str, None]] = attrs.field(init=False, factory=dict)
    _heap: list[tuple[float, int, str]] = attrs.field(init=False, factory=list)
    _seq: int = attrs.field(init=False, default=0)
    _paused_until: float = attrs.field(init=False, default=float("-inf"))

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.interval:
            raise ValueError(
                f"max_interval ({self.max_interval!r}) must be >= interval ({self.interval!r})"
            )
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be within [0, 1), got {self.jitter!r}")

    # -- membership ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def add(self, model_id: str, use_case_id: str | None, now: float) -> None:
        """Track a model (no-op if tracked); it is due now, or soon if it joins a group."""
        if model_id in self._entries:
            return
        joins = use_case_id is not None and bool(self._by_use_case.get(use_case_id))
        entry = _Entry(use_case_id, now + self.interval if joins else now, self.interval)
        self._entries[model_id] = entry
        if use_case_id is not None:
            self._by_use_case.setdefault(use_case_id, {})[model_id] = None
        self._push(model_id, entry)

    def remove(self, model_id: str) -> None:
        """Stop tracking a model (no-op if it is not tracked)."""
        entry = self._entries.pop(model_id, None)
        if entry is not None and entry.use_case_id is not None:
            self._forget_use_case(model_id, entry.use_case_id)

    def set_use_case(self, model_id: str, use_case_id: str | None) -> None:
        """Move a tracked model to `use_case_id` (learned from its first get)."""
        entry = self._entries[model_id]
        if entry.use_case_id == use_case_id:
            return
        if entry.use_case_id is not None:
            self._forget_use_case(model_id, entry.use_case_id)
        entry.use_case_id = use_case_id
        if use_case_id is not None:
            self._by_use_case.setdefault(use_case_id, {})[model_id] = None

    def models_of(self, use_case_id: str) -> tuple[str, ...]:
        """Every tracked model of a use case, in the order they were grouped."""
        return tuple(self._by_use_case.get(use_case_id, ()))

    def use_case_of(self, model_id: str) -> str | None:
        """A tracked model's use case (None if unknown or the model is not tracked)."""
        entry = self._entries.get(model_id)
        return None if entry is None else entry.use_case_id

    # -- time -----------------------------------------------------------------------

    def due(self, now: float) -> list[str]:
        """The models due at `now`, earliest first (none while paused), without taking them.

        Unlike `plan`, it reschedules nothing, so asking twice gives the same answer.
        It is not read-only, though: on the way it discards the stale heap items (left
        behind by later records and removals) due by `now`, and pushes the live ones back.
        """
        if now < self._paused_until:
            return []
        items = self._pop_due(now)
        for item in items:
            heapq.heappush(self._heap, item)
        return [model_id for _, _, model_id in items]

    def plan(self, now: float) -> list[Poll]:
        """Take the due models and return the polls that refresh them.

        Lists come first (one per use case, in order of their earliest due model),
        then gets. Every due model is rescheduled one current interval ahead.
        """
        if now < self._paused_until:
            return []
        lists: dict[str, None] = {}
        gets: list[str] = []
        for _, _, model_id in self._pop_due(now):
            entry = self._entries[model_id]
            use_case_id = entry.use_case_id
            if use_case_id is not None and len(self._by_use_case[use_case_id]) >= 2:
                lists[use_case_id] = None
            else:
                gets.append(model_id)
            entry.due = now + self._jittered(entry)
            self._push(model_id, entry)
        polls = [Poll.list(uc, tuple(self._by_use_case[uc])) for uc in lists]
        polls.extend(Poll.get(model_id) for model_id in gets)
        return polls

    def record(self, model_id: str, changed: bool, now: float) -> None:
        """Store what a poll planned at `now` found: `changed` if the status is new.

        A change (or a first sighting) is polled again one base interval later; no
        change backs off.
        """
        entry = self._entries[model_id]
        entry.interval = (
            self.interval if changed else min(entry.interval * self.factor, self.max_interval)
        )
        entry.due = now + self._jittered(entry)
        self._push(model_id, entry)

    def failed(self, model_id: str, now: float) -> None:
        """A poll for this model failed: back off as if nothing changed."""
        entry = self._entries[model_id]
        entry.interval = min(entry.interval * self.factor, self.max_interval)
        entry.due = now + self._jittered(entry)
        self._push(model_id, entry)

    def retry_at(self, model_id: str, when: float) -> None:
        """Make a model due at `when`, keeping its interval (e.g. a poll skipped by a pause)."""
        entry = self._entries[model_id]
        entry.due = when
        self._push(model_id, entry)

    def hold(self, model_ids: Iterable[str], now: float) -> bool:
        """If polling is paused at `now`, make these models due at its end and say True.

        For polls planned before a pause began: they are not made, but not lost either
        (their intervals are kept, as with `retry_at`). Untracked models are skipped.
        """
        if now >= self._paused_until:
            return False
        for model_id in model_ids:
            if model_id in self._entries:
                self.retry_at(model_id, self._paused_until)
        return True

    def interval_of(self, model_id: str) -> float:
        """A tracked model's current (unjittered) interval."""
        return self._entries[model_id].interval

    def due_at(self, model_id: str) -> float:
        """When a tracked model is next due."""
        return self._entries[model_id].due

    def pause_until(self, when: float) -> None:
        """Hold every poll back until `when` (a later pause wins over an earlier one)."""
        self._paused_until = max(self._paused_until, when)

    @property
    def paused_until(self) -> float | None:
        """The end of the current or last pause, if there was one."""
        return None if self._paused_until == float("-inf") else self._paused_until

    def next_deadline(self) -> float | None:
        """When the next poll is due (after any pause); None if nothing is tracked."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        if not heap:
            return None
        return max(heap[0][0], self._paused_until)

    # -- internals --------------------------------------------------------------------

    def _jittered(self, entry: _Entry) -> float:
        """The entry's interval, jittered unless its model is polled with its use case."""
        interval = entry.interval
        grouped = entry.use_case_id is not None and len(self._by_use_case[entry.use_case_id]) >= 2
        if self.jitter and not grouped:
            interval *= 1 + self.rng.uniform(-self.jitter, self.jitter)
        return min(interval, self.max_interval)

    def _push(self, model_id: str, entry: _Entry) -> None:
        self._seq = entry.seq = seq = self._seq + 1
        heapq.heappush(self._heap, (entry.due, seq, model_id))
        if len(self._heap) > _COMPACT_MIN + _COMPACT_RATIO * len(self._entries):
            self._heap = [item for item in self._heap if self._live(item)]
            heapq.heapify(self._heap)

    def _live(self, item: tuple[float, int, str]) -> bool:
        entry = self._entries.get(item[2])
        return entry is not None and entry.seq == item[1]

    def _pop_due(self, now: float) -> list[tuple[float, int, str]]:
        heap = self._heap
        items = []
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            if self._live(item):
                items.append(item)
        return items

    def _forget_use_case(self, model_id: str, use_case_id: str) -> None:
        members = self._by_use_case[use_case_id]
        members.pop(model_id, None)
        if not members:
            del self._by_use_case[use_case_id]
