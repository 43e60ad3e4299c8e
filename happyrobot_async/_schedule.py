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
  earliest of many draws is about `interval * (1 - jitter)`). `record_many` is
  `record` for the unchanged models of one list, all at once.
- `pause_until(t)` holds every poll back until `t` (a server's Retry-After);
  `hold(ids, now)` puts off polls planned before the pause began to its end.

Cost: each model keeps its own interval and due time, but the timer heap
(`_scheduling.Timers`) holds one item per use case, so waking up, planning and
rescheduling a use case's models cost one heap operation and one pass over plain
attributes; a use case's models share their interval and due-time floats.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Literal

import attrs

from ._scheduling import ModelEntry, Timers, check_settings, grown, later

__all__: list[str] = []


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


@attrs.define(on_setattr=attrs.setters.NO_OP)  # settings are checked once; no per-write hook
class Schedule:
    """Per-model due times and intervals for every tracked model."""

    interval: float = attrs.field(default=2.0)
    max_interval: float = attrs.field(default=30.0)
    factor: float = attrs.field(default=1.5)
    jitter: float = attrs.field(default=0.1)
    rng: random.Random = attrs.field(factory=random.Random)
    _entries: dict[str, ModelEntry] = attrs.field(init=False, factory=dict)
    _timers: Timers = attrs.field(init=False)
    _paused_until: float = attrs.field(init=False, default=float("-inf"))
    _grown: dict[float, float] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        check_settings(self.interval, self.max_interval, self.factor, self.jitter)
        self._timers = Timers(self._entries)

    # -- membership ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def add(self, model_id: str, use_case_id: str | None, now: float) -> None:
        """Track a model (no-op if tracked); it is due now, or soon if it joins a group."""
        if model_id in self._entries:
            return
        joins = use_case_id is not None and use_case_id in self._timers.groups
        entry = ModelEntry(use_case_id, now + self.interval if joins else now, self.interval)
        self._entries[model_id] = entry
        self._timers.place(model_id, entry)

    def remove(self, model_id: str) -> None:
        """Stop tracking a model (no-op if it is not tracked)."""
        entry = self._entries.pop(model_id, None)
        if entry is not None and entry.use_case_id is not None:
            self._timers.leave(model_id, entry.use_case_id)

    def set_use_case(self, model_id: str, use_case_id: str | None) -> None:
        """Move a tracked model to `use_case_id` (learned from its first get)."""
        entry = self._entries[model_id]
        if entry.use_case_id == use_case_id:
            return
        if entry.use_case_id is not None:
            self._timers.leave(model_id, entry.use_case_id)
        entry.use_case_id = use_case_id
        self._timers.place(model_id, entry)

    def models_of(self, use_case_id: str) -> tuple[str, ...]:
        """Every tracked model of a use case, in the order they were grouped."""
        group = self._timers.groups.get(use_case_id)
        return () if group is None else group.model_ids()

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
        found: list[tuple[float, int, int, str]] = []
        for item in self._timers.pop_due(now):
            self._timers.put_back(item)
            due, seq, key = item
            if isinstance(key, str):
                found.append((due, seq, 0, key))
            else:
                members = key.members.items()
                found += [(e.due, seq, i, m) for i, (m, e) in enumerate(members) if e.due <= now]
        return [model_id for *_, model_id in sorted(found)]

    def plan(self, now: float) -> list[Poll]:
        """Take the due models and return the polls that refresh them.

        Lists come first (one per use case, in the order their heap items come due),
        then gets. Every due model is rescheduled one current interval ahead.
        """
        if now < self._paused_until:
            return []
        lists: list[Poll] = []
        gets: list[str] = []
        for _, _, key in self._timers.pop_due(now):
            if isinstance(key, str):  # a model whose use case is unknown
                entry = self._entries[key]
                self._timers.set_due(key, entry, now + self._jittered(entry))
                gets.append(key)
                continue
            group, at, taken = key, later(now), False
            listed = len(group.members) >= 2
            for model_id, entry in group.members.items():
                if entry.due <= now:
                    taken = True
                    entry.due = at(entry.interval) if listed else now + self._jittered(entry)
                    if not listed:
                        gets.append(model_id)
            if taken and listed:
                lists.append(Poll.list(group.use_case_id, group.model_ids()))
            self._timers.rearm(group)
        return lists + [Poll.get(model_id) for model_id in gets]

    def record(self, model_id: str, changed: bool, now: float) -> None:
        """Store what a poll planned at `now` found: `changed` if the status is new.

        A change (or a first sighting) is polled again one base interval later; no
        change backs off.
        """
        entry = self._entries[model_id]
        entry.interval = self.interval if changed else self._grow(entry.interval)
        self._timers.set_due(model_id, entry, now + self._jittered(entry))

    def record_many(self, use_case_id: str, model_ids: Iterable[str], now: float) -> None:
        """`record(id, False, now)` for each of `model_ids`, listed together from `use_case_id`.

        The models still grouped there are rescheduled in one pass; any other is recorded
        alone, and an untracked one is skipped.
        """
        group = self._timers.groups.get(use_case_id)
        members = group.members if group is not None and len(group.members) >= 2 else {}
        at, grow = later(now), self._grow
        before = after = due = float("nan")  # the last interval seen, grown, and its due time
        for model_id in model_ids:
            entry = members.get(model_id)
            if entry is None:
                if model_id in self._entries:
                    self.record(model_id, False, now)
                continue
            if entry.interval is not before:  # models listed together mostly share it
                before = entry.interval
                after = grow(before)
                due = at(after)
            entry.interval, entry.due = after, due
        if group is not None:
            self._timers.refresh(group)

    def failed(self, model_id: str, now: float) -> None:
        """A poll for this model failed: back off as if nothing changed."""
        entry = self._entries[model_id]
        entry.interval = self._grow(entry.interval)
        self._timers.set_due(model_id, entry, now + self._jittered(entry))

    def retry_at(self, model_id: str, when: float) -> None:
        """Make a model due at `when`, keeping its interval (e.g. a poll skipped by a pause)."""
        self._timers.set_due(model_id, self._entries[model_id], when)

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
        """When the next poll may be due (after any pause); None if nothing is tracked."""
        due = self._timers.next_due()
        return None if due is None else max(due, self._paused_until)

    # -- internals --------------------------------------------------------------------

    def _grow(self, interval: float) -> float:
        """The interval after one more unchanged poll (one shared float per value)."""
        return grown(self._grown, interval, self.factor, self.max_interval)

    def _jittered(self, entry: ModelEntry) -> float:
        """The entry's interval, jittered unless its model is polled with its use case."""
        interval = entry.interval
        use_case_id = entry.use_case_id
        grouped = use_case_id is not None and len(self._timers.groups[use_case_id].members) >= 2
        if self.jitter and not grouped:
            interval *= 1 + self.rng.uniform(-self.jitter, self.jitter)
        return min(interval, self.max_interval)
