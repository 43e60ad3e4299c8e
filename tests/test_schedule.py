"""The pure poll scheduler: no network, no asyncio, time passed in."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from happyrobot_async._schedule import Poll, Schedule

#: What a poll found, as `record` is told it (`_settle` decides which it is).
CHANGED, SAME = True, False


def make(*, jitter: float = 0.0, seed: int = 0, **kwargs: float) -> Schedule:
    """A schedule without jitter unless asked, with a seeded random source."""
    return Schedule(jitter=jitter, rng=random.Random(seed), **kwargs)


# (tracked models as (id, use_case or None), expected polls at t=0)
GROUPING = [
    pytest.param([("a", "u1")], [Poll.get("a")], id="lone model -> get"),
    pytest.param([("a", None)], [Poll.get("a")], id="unknown use case -> get"),
    pytest.param(
        [("a", None), ("b", None)], [Poll.get("a"), Poll.get("b")], id="unknown use cases -> gets"
    ),
    pytest.param(
        [("a", "u1"), ("b", "u1")], [Poll.list("u1", ("a", "b"))], id="two in a use case -> list"
    ),
    pytest.param(
        [("a", "u1"), ("b", "u1"), ("c", "u2"), ("d", None)],
        [Poll.list("u1", ("a", "b")), Poll.get("c"), Poll.get("d")],
        id="mixed",
    ),
    pytest.param(
        [("a", "u1"), ("b", "u2"), ("c", "u1"), ("d", "u2"), ("e", "u1")],
        [Poll.list("u1", ("a", "c", "e")), Poll.list("u2", ("b", "d"))],
        id="one list per use case",
    ),
]


@pytest.mark.parametrize(("tracked", "expected"), GROUPING)
def test_grouping(tracked: list[tuple[str, str | None]], expected: list[Poll]) -> None:
    """Two or more models of a use case share one list; the rest are fetched one by one."""
    s = make()
    for model_id, use_case in tracked:
        s.add(model_id, use_case, 0.0)
    assert s.plan(10.0) == expected


def test_list_covers_models_that_are_not_due() -> None:
    """One due model makes its use case's list cover every tracked model of that use case."""
    s = make()
    for model_id in ("a", "b", "c"):
        s.add(model_id, "u1", 0.0)
    s.plan(0.0)
    s.record("a", CHANGED, 0.0)  # due at 2
    s.record("b", CHANGED, 0.0)
    s.record("b", SAME, 1.0)  # due at 4
    s.record("c", CHANGED, 0.0)
    s.record("c", SAME, 1.0)
    s.record("c", SAME, 2.0)  # due at 6.5
    assert s.due(2.0) == ["a"]
    assert s.plan(2.0) == [Poll.list("u1", ("a", "b", "c"))]


# (name, adds as (id, use_case, at), now, expected due)
DUE = [
    pytest.param([("a", None, 0.0)], 0.0, ["a"], id="new model due at once"),
    pytest.param([("a", None, 5.0)], 4.9, [], id="not before it is tracked"),
    pytest.param([("a", "u", 0.0), ("b", "u", 0.0)], 0.0, ["a"], id="joiner rides the group"),
    pytest.param(
        [("a", "u", 0.0), ("b", "u", 0.0)], 2.0, ["a", "b"], id="joiner due in 1 interval"
    ),
    pytest.param([("a", "u", 0.0), ("b", "v", 0.0)], 0.0, ["a", "b"], id="other use case"),
]


@pytest.mark.parametrize(("adds", "now", "expected"), DUE)
def test_who_is_due(
    adds: list[tuple[str, str | None, float]], now: float, expected: list[str]
) -> None:
    """A new model is due at once unless it joins a use case already being polled."""
    s = make()
    for model_id, use_case, at in adds:
        s.add(model_id, use_case, at)
    assert s.due(now) == expected
    assert s.due(now) == expected, "due() reschedules nothing"


def test_plan_reschedules_what_it_takes() -> None:
    """A planned model is not due again until one interval later, even if nothing is recorded."""
    s = make()
    s.add("a", None, 0.0)
    assert s.plan(0.0) == [Poll.get("a")]
    assert s.plan(1.9) == []
    assert s.next_deadline() == 2.0
    assert s.plan(2.0) == [Poll.get("a")]


# what each poll found; expected interval after each record
BACKOFF = [
    pytest.param([CHANGED], [2.0], id="first sighting"),
    pytest.param([CHANGED] + [SAME] * 3, [2.0, 3.0, 4.5, 6.75], id="grows while unchanged"),
    pytest.param(
        [CHANGED] + [SAME] * 9, [2.0 * 1.5**i for i in range(7)] + [30.0] * 3, id="capped"
    ),
    pytest.param([CHANGED, SAME, SAME, CHANGED], [2.0, 3.0, 4.5, 2.0], id="reset on change"),
    pytest.param([SAME, SAME], [3.0, 4.5], id="grows from the base interval"),
    pytest.param([CHANGED, SAME, CHANGED, SAME], [2.0, 3.0, 2.0, 3.0], id="grows again"),
]


@pytest.mark.parametrize(("found", "intervals"), BACKOFF)
def test_backoff(found: list[bool], intervals: list[float]) -> None:
    """Intervals grow by the factor while nothing changes, cap at the maximum, reset on change."""
    s = make()
    s.add("a", None, 0.0)
    now = 0.0
    seen = []
    for changed in found:
        s.record("a", changed, now)
        seen.append(s.interval_of("a"))
        assert s.due_at("a") == pytest.approx(now + s.interval_of("a"))
        now = s.due_at("a")
    assert seen == pytest.approx(intervals)


def test_failed_backs_off() -> None:
    """A failed poll grows the interval like an unchanged status."""
    s = make()
    s.add("a", None, 0.0)
    s.record("a", CHANGED, 0.0)
    s.failed("a", 1.0)
    assert s.interval_of("a") == 3.0
    assert s.due_at("a") == 4.0


@pytest.mark.parametrize("seed", range(5))
def test_jitter_stays_within_bounds_and_cap(seed: int) -> None:
    """Jitter spreads due times by at most ±jitter and never past the cap."""
    s = make(jitter=0.1, seed=seed)
    s.add("a", None, 0.0)
    for i in range(30):
        s.record("a", i == 0, 100.0)
        delay = s.due_at("a") - 100.0
        interval = s.interval_of("a")
        assert interval * 0.9 <= delay <= min(interval * 1.1, 30.0), i
    assert s.interval_of("a") == 30.0


def test_models_listed_together_are_not_jittered() -> None:
    """A use case's models keep exact intervals, so its shared list is not pulled earlier."""
    s = make(jitter=0.1, seed=3)
    for i in range(50):
        s.add(f"m{i}", "uc", 0.0)
    for i in range(50):
        s.record(f"m{i}", CHANGED, 10.0)
    assert {s.due_at(f"m{i}") for i in range(50)} == {12.0}
    s.add("lone", "other", 0.0)
    s.record("lone", CHANGED, 10.0)
    assert s.due_at("lone") != 12.0


def test_jitter_is_seeded() -> None:
    """The same seed gives the same schedule."""
    a, b = make(jitter=0.1, seed=7), make(jitter=0.1, seed=7)
    for s in (a, b):
        s.add("m", None, 0.0)
        s.record("m", CHANGED, 0.0)
    assert a.due_at("m") == b.due_at("m") != 2.0


# (pause_until calls, now, due?, next_deadline)
PAUSE = [
    pytest.param([5.0], 0.0, False, 5.0, id="paused"),
    pytest.param([5.0], 5.0, True, 5.0, id="pause over"),
    pytest.param([5.0, 3.0], 4.0, False, 5.0, id="shorter pause does not shorten"),
    pytest.param([3.0, 8.0], 6.0, False, 8.0, id="longer pause extends"),
    pytest.param([-1.0], 0.0, True, 0.0, id="pause in the past"),
]


@pytest.mark.parametrize(("pauses", "now", "is_due", "deadline"), PAUSE)
def test_retry_after_pause(pauses: list[float], now: float, is_due: bool, deadline: float) -> None:
    """A Retry-After pause holds every poll back and moves the next deadline."""
    s = make()
    s.add("a", "u", 0.0)
    s.add("b", "u", 0.0)
    s.add("c", None, 0.0)
    for until in pauses:
        s.pause_until(until)
    assert bool(s.due(now)) is is_due
    assert bool(s.plan(now)) is is_due
    if not is_due:
        assert s.next_deadline() == deadline


def test_next_deadline_is_the_earliest() -> None:
    """The loop sleeps until the earliest due model; None when nothing is tracked."""
    s = make()
    assert s.next_deadline() is None
    s.add("a", None, 0.0)
    s.add("b", None, 0.0)
    s.plan(0.0)
    s.record("a", CHANGED, 0.0)
    s.record("a", SAME, 0.5)  # due 3.5
    s.record("b", CHANGED, 0.0)  # due 2.0
    assert s.next_deadline() == 2.0
    s.remove("b")
    assert s.next_deadline() == 3.5
    s.remove("a")
    assert s.next_deadline() is None


def test_remove_and_regroup() -> None:
    """Removing a model can turn its use case's list back into a get; a learned use case groups."""
    s = make()
    s.add("a", "u", 0.0)
    s.add("b", "u", 0.0)
    s.add("c", None, 0.0)
    assert s.plan(0.0) == [Poll.list("u", ("a", "b")), Poll.get("c")]
    s.set_use_case("c", "u")
    assert s.models_of("u") == ("a", "b", "c")
    s.remove("a")
    s.remove("b")
    assert s.plan(2.0) == [Poll.get("c")]
    assert s.models_of("u") == ("c",)
    s.remove("c")
    assert s.models_of("u") == ()
    assert len(s) == 0


def test_add_twice_and_remove_unknown_are_no_ops() -> None:
    """Adding a tracked model again keeps its state; removing an unknown one does nothing."""
    s = make()
    s.add("a", None, 0.0)
    s.record("a", CHANGED, 0.0)
    s.add("a", None, 1.0)
    assert s.due_at("a") == 2.0
    s.remove("zzz")
    assert "a" in s and len(s) == 1


def test_retry_at_keeps_interval() -> None:
    """A poll skipped by a pause is due again at the pause's end, interval untouched."""
    s = make()
    s.add("a", None, 0.0)
    s.record("a", CHANGED, 0.0)
    s.record("a", SAME, 2.0)
    s.retry_at("a", 2.5)
    assert s.interval_of("a") == 3.0
    assert s.due(2.5) == ["a"]


def test_hold_puts_off_polls_planned_before_a_pause() -> None:
    """While paused, held models are due at the pause's end, intervals kept; else no hold."""
    s = make()
    s.add("a", "u1", 0.0)
    s.add("b", None, 0.0)
    s.plan(0.0)
    assert not s.hold(("a", "b"), 1.0)  # no pause: nothing held
    s.pause_until(5.0)
    assert s.hold(("a", "b", "untracked"), 1.0)
    assert (s.due_at("a"), s.due_at("b")) == (5.0, 5.0)
    assert s.interval_of("a") == 2.0
    assert not s.hold(("a",), 5.0)  # the pause is over


def test_use_case_of() -> None:
    """A tracked model's use case, as added or learned; None when unknown or untracked."""
    s = make()
    s.add("a", "u1", 0.0)
    s.add("b", None, 0.0)
    assert (s.use_case_of("a"), s.use_case_of("b"), s.use_case_of("zzz")) == ("u1", None, None)
    s.set_use_case("b", "u2")
    assert s.use_case_of("b") == "u2"


def memory_of_refreshes(s: Schedule, ids: list[str], rounds: int) -> int:
    """Bytes still allocated after recording every model unchanged at t = 1, 2, ... rounds."""
    tracemalloc.start()
    try:
        for t in range(1, rounds + 1):
            for model_id in ids:
                s.record(model_id, SAME, float(t))
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return grown


def test_memory_stays_flat_under_repeated_refreshes() -> None:
    """Refreshing 1,000 models 50 times over keeps the schedule's memory flat."""
    s = make()
    ids = [f"m{i}" for i in range(1000)]
    for model_id in ids:
        s.add(model_id, "u", 0.0)
        s.record(model_id, CHANGED, 0.0)
    grown = memory_of_refreshes(s, ids, rounds=50)
    # what is still alive of it: a bounded heap holds ~2,000 items (~0.25 MB); keeping
    # every stale item would hold 50,000 (~6 MB)
    assert grown < 1_000_000


def test_ten_thousand_models_in_ten_use_cases_cost_one_list_per_use_case() -> None:
    """10,000 models in 10 use cases cost one list per use case per interval, never a get."""
    s = make(jitter=0.1)
    for i in range(10_000):
        s.add(f"m{i:05}", f"u{i % 10}", 0.0)
    now = 0.0
    last_listed: dict[str | None, float] = {}
    seen: set[str] = set()
    polls_made = 0
    while now < 120.0:
        polls = s.plan(now)
        assert all(p.kind == "list" and len(p.model_ids) == 1000 for p in polls)
        assert len({p.use_case_id for p in polls}) == len(polls)
        for p in polls:
            if p.use_case_id in last_listed:
                assert now - last_listed[p.use_case_id] >= 2.0
            last_listed[p.use_case_id] = now
            for model_id in p.model_ids:
                s.record(model_id, model_id not in seen, now)  # only the first is a change
                seen.add(model_id)
        polls_made += len(polls)
        deadline = s.next_deadline()
        assert deadline is not None and deadline > now
        now = deadline
    assert len(last_listed) == 10
    # backoff: far fewer than one list per use case every 2 s (which would be 600)
    assert polls_made < 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0.0},
        {"interval": 5.0, "max_interval": 1.0},
        {"factor": 0.5},
        {"jitter": 1.0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    """Nonsense intervals, factors and jitters are refused up front."""
    with pytest.raises(ValueError):
        Schedule(**kwargs)  # type: ignore[arg-type]


# -- a use case rescheduled as one ---------------------------------------------------------


def test_record_many_reschedules_a_use_case_at_once() -> None:
    """The unchanged models of one list back off together, sharing one due time."""
    s = make()
    ids = [f"m{i}" for i in range(5)]
    for model_id in ids:
        s.add(model_id, "u", 0.0)
    assert s.plan(0.0) == [Poll.list("u", tuple(ids))]
    s.record_many("u", ids, 0.0)
    assert {s.interval_of(model_id) for model_id in ids} == {3.0}
    assert {id(s.due_at(model_id)) for model_id in ids} == {id(s.due_at("m0"))} != set()
    assert s.due_at("m0") == 3.0
    assert s.next_deadline() == 3.0
    assert s.plan(2.9) == []
    assert s.plan(3.0) == [Poll.list("u", tuple(ids))]


def test_record_many_records_any_other_model_alone() -> None:
    """A listed model no longer grouped there is recorded alone; an untracked one is skipped."""
    s = make()
    s.add("a", "u", 0.0)
    s.add("b", "u", 0.0)
    s.add("moved", "u", 0.0)
    s.set_use_case("moved", "v")
    s.record_many("u", ["a", "moved", "gone"], 1.0)
    assert (s.interval_of("a"), s.interval_of("moved")) == (3.0, 3.0)
    assert (s.due_at("a"), s.due_at("moved")) == (4.0, 4.0)
    assert "gone" not in s


def test_a_use_case_due_early_plans_nothing_and_is_rearmed() -> None:
    """A record that pushes a use case's earliest model later leaves its timer early: the
    wake-up plans no poll and re-arms the timer at the earliest model."""
    s = make()
    s.add("a", "u", 0.0)  # due at once
    s.add("b", "u", 0.0)  # joins: due in one interval
    s.record("a", SAME, 0.0)  # a: due at 3
    assert s.next_deadline() == 0.0  # the use case's timer is early now
    assert s.plan(0.0) == []
    assert s.next_deadline() == 2.0
    assert s.plan(2.0) == [Poll.list("u", ("a", "b"))]


def test_ten_thousand_models_of_one_use_case_keep_one_timer() -> None:
    """Planning and recording a big use case keeps the schedule's memory flat: one timer
    for all of its models, not one per model."""
    s = make()
    ids = [f"m{i:05}" for i in range(10_000)]
    for model_id in ids:
        s.add(model_id, "u", 0.0)
    (poll,) = s.plan(0.0)  # the first plan makes the use case's list of ids, kept after
    s.record_many("u", poll.model_ids, 0.0)
    tracemalloc.start()
    try:
        now = 3.0
        for _ in range(20):
            (poll,) = s.plan(now)
            s.record_many("u", poll.model_ids, now)
            deadline = s.next_deadline()
            assert deadline is not None
            now = deadline
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert grown < 10_000  # a timer per model would be ~1 MB per cycle before compaction


def test_models_of_an_unknown_use_case_recorded_over_and_over_keep_memory_flat() -> None:
    """Each record of a model with a timer of its own leaves a stale timer behind; stale
    timers are swept, so memory stays flat, and the next deadline stays right."""
    s = make()
    ids = [f"m{i}" for i in range(100)]
    for model_id in ids:
        s.add(model_id, None, 0.0)
    grown = memory_of_refreshes(s, ids, rounds=50)
    assert grown < 100_000  # keeping all 5,000 stale timers would hold ~0.5 MB
    assert s.next_deadline() == 80.0  # capped at 30 s after the last record, at 50
