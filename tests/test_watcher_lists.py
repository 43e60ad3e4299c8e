"""What one list says about the models it was asked for: `_listread.sort_listed` and `_seen`.

Pure: list bodies are built here and decoded by `_wire.decode_list`; no network. The
handles need an event loop only because a `WatchHandle` belongs to one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

import happyrobot_async as hr
from happyrobot_async import _seen
from happyrobot_async._handles import WatchHandle
from happyrobot_async._listread import Sorted, index_by_id, sort_listed
from happyrobot_async._seen import Snapshots, rebuild, unchanged
from happyrobot_async._serde import structure
from happyrobot_async._settle import judge_status
from happyrobot_async._wire import ListItems, decode_list

ID_A, ID_B, ID_C, STRANGER = "a" * 24, "b" * 24, "c" * 24, "d" * 24
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def item(model_id: str, status: str = "pending", **fields: Any) -> dict[str, Any]:
    """A list item as the API sends it (no sample ids)."""
    return {
        "id": model_id,
        "created_at": "2024-05-01T12:00:00Z",
        "status": status,
        "name": f"model {model_id[0]}",
        "organization_id": "org-1",
        "use_case_id": "uc-1",
        "description": "",
        "trainable": False,
        **fields,
    }


def listed(*items: object) -> ListItems:
    """The list response carrying `items`, decoded as the poll loop decodes it."""
    return decode_list(200, {}, json.dumps(list(items)).encode())


class Follower:
    """Handles and snapshots, fed with lists the way the poll loop feeds them."""

    def __init__(self, *model_ids: str) -> None:
        self.handles = {model_id: WatchHandle(model_id) for model_id in model_ids}
        self.snapshots = Snapshots()

    def read(self, *items: object, skip: frozenset[str] = frozenset()) -> Sorted:
        """Sort the handles' models by `items`, and observe each changed one."""
        found = sort_listed(tuple(self.handles), listed(*items), self.handles, skip, self.snapshots)
        for model, snapshot in found.changed:
            self.handles[model.id].observe(model, snapshot)
        return found


def ids(found: Sorted) -> list[str]:
    return [model.id for model, _ in found.changed]


# -- sort_listed ------------------------------------------------------------------------


async def test_new_models_are_structured_and_kept_as_snapshots() -> None:
    """At the first sighting every item is structured; the handle keeps its snapshot."""
    follower = Follower(ID_A, ID_B)
    found = follower.read(item(ID_A), item(ID_B, "training"))
    assert ids(found) == [ID_A, ID_B] and found.same == [] and found.unserved == []
    assert all(snapshot is not None for _, snapshot in found.changed)
    handle = follower.handles[ID_B]
    assert handle.status is hr.ModelStatus.TRAINING
    assert handle.model == structure(item(ID_B, "training"), hr.Model)


async def test_an_unchanged_item_is_not_structured_again_nor_reported() -> None:
    """The same item again is `same`: nothing structured, so nothing judged or reported."""
    follower = Follower(ID_A, ID_B)
    follower.read(item(ID_A), item(ID_B))
    found = follower.read(item(ID_A), item(ID_B))
    assert found.changed == [] and found.same == [ID_A, ID_B] and found.unserved == []


async def test_a_changed_status_is_structured_and_reported() -> None:
    """An item whose status moved is structured, and judging it emits the change."""
    follower = Follower(ID_A)
    follower.read(item(ID_A))
    found = sort_listed(
        (ID_A,), listed(item(ID_A, "training")), follower.handles, frozenset(), Snapshots()
    )
    assert ids(found) == [ID_A]
    model, snapshot = found.changed[0]
    before = follower.handles[ID_A].observe(model, snapshot)
    assert before == "pending"
    assert judge_status(before, model, False, AT).change == hr.StatusChange(
        model, hr.ModelStatus.PENDING, hr.ModelStatus.TRAINING, AT
    )


async def test_a_change_besides_the_status_is_structured_but_not_reported() -> None:
    """A new name with the same status is structured (the handle sees it), with no change."""
    follower = Follower(ID_A)
    follower.read(item(ID_A))
    found = sort_listed(
        (ID_A,), listed(item(ID_A, name="renamed")), follower.handles, frozenset(), Snapshots()
    )
    assert ids(found) == [ID_A]
    model, snapshot = found.changed[0]
    before = follower.handles[ID_A].observe(model, snapshot)
    assert judge_status(before, model, False, AT).change is None
    assert follower.handles[ID_A].model == model and model.name == "renamed"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(item(ID_A, status=3), id="a status that is not a string"),
        pytest.param(item(ID_A, trainable=1), id="a boolean turned into a number"),
        pytest.param(item(ID_A, trainable=0.0), id="false turned into 0.0"),
        pytest.param({"id": ID_A, "name": "no status"}, id="required fields missing"),
    ],
)
async def test_our_item_turned_malformed_falls_back_to_a_get(bad: dict[str, Any]) -> None:
    """A watched model's item that stops decoding is unserved (asked with a get), even when
    it equals the last good one as Python compares (`1 == True`)."""
    follower = Follower(ID_A, ID_B)
    follower.read(item(ID_A), item(ID_B))
    found = follower.read(bad, item(ID_B))
    assert found.changed == [] and found.same == [ID_B]
    assert found.unserved == [ID_A] and found.bad == 1


async def test_a_model_missing_from_its_list_is_unserved() -> None:
    """A model no item speaks for is asked with a get; no bad item is counted for it."""
    follower = Follower(ID_A, ID_B)
    found = follower.read(item(ID_B))
    assert found.unserved == [ID_A] and found.bad == 0 and ids(found) == [ID_B]


async def test_items_nobody_asked_for_are_never_structured() -> None:
    """A stranger's item, even a malformed one, costs nothing and counts as nothing."""
    follower = Follower(ID_A)
    found = follower.read({"id": STRANGER, "status": 3}, "junk", [1], item(ID_A))
    assert ids(found) == [ID_A] and found.bad == 0 and found.unserved == []


async def test_untracked_models_and_models_with_a_get_out_are_left_alone() -> None:
    """A model whose get is out (that get will tell) or that is no longer followed is skipped."""
    follower = Follower(ID_A, ID_B)
    gone = sort_listed(
        (ID_A, ID_B, ID_C),
        listed(item(ID_A), item(ID_B), item(ID_C)),
        follower.handles,
        frozenset({ID_B}),
        follower.snapshots,
    )
    assert ids(gone) == [ID_A] and gone.same == [] and gone.unserved == []


def test_index_by_id_survives_items_that_are_not_models() -> None:
    """Items that are not objects, or have no usable id, are left out; the last id wins."""
    items = [item(ID_A), "junk", {"id": ["x"]}, {"name": "no id"}, item(ID_A, "training"), None]
    assert index_by_id(items)[ID_A] == 4
    assert index_by_id([item(ID_A), item(ID_B)]) == {ID_A: 0, ID_B: 1}


# -- snapshots --------------------------------------------------------------------------


def snapshot_of(raw: dict[str, Any], snapshots: Snapshots | None = None) -> Any:
    snapshots = snapshots or Snapshots()
    raw = dict(raw)
    snapshots.share(raw, raw["id"])
    return snapshots.take(raw)


@pytest.mark.parametrize(
    ("after", "same"),
    [
        pytest.param(item(ID_A), True, id="equal item"),
        pytest.param(item(ID_A, "training"), False, id="status"),
        pytest.param(item(ID_A, description="new"), False, id="another field"),
        pytest.param(item(ID_A, trainable=0), False, id="false became 0"),
        pytest.param(item(ID_A, extra="new key"), False, id="a key more"),
        pytest.param({k: v for k, v in item(ID_A).items() if k != "trainable"}, False, id="less"),
        pytest.param(dict(reversed(item(ID_A).items())), False, id="keys reordered"),
    ],
)
def test_unchanged_is_exact(after: dict[str, Any], same: bool) -> None:
    """Only the very same item (keys, order, value types and values) counts as unchanged."""
    shape, values = snapshot_of(item(ID_A))
    assert unchanged(shape, values, after) is same


def test_items_holding_arrays_or_objects_get_no_snapshot() -> None:
    """Inside arrays and objects equality is not exact (`[1] == [True]`): no snapshot."""
    assert snapshot_of(item(ID_A, train_sample_ids=["s1"])) is None
    assert snapshot_of(item(ID_A, extra={"k": 1})) is None


def test_a_snapshot_rebuilds_the_same_model() -> None:
    """The model rebuilt from a snapshot equals the one structured from the item."""
    raw = item(ID_A, from_model_id=ID_B, explain_tools=True)
    shape, values = snapshot_of(raw)
    assert rebuild(shape, values) == structure(raw, hr.Model)


def test_shapes_and_common_strings_are_kept_once() -> None:
    """Two items of one shape share the shape, their common strings, and the caller's id."""
    snapshots = Snapshots()
    first, second = item(ID_A), item(ID_B)
    own_id = ID_B[:12] + ID_B[12:]  # an equal string, another object
    snapshots.share(first, ID_A)
    snapshots.share(second, own_id)
    taken_a, taken_b = snapshots.take(first), snapshots.take(second)
    assert taken_a is not None and taken_b is not None
    (shape_a, values_a), (shape_b, values_b) = taken_a, taken_b
    assert shape_a is shape_b
    at = shape_a.keys.index("organization_id")
    assert values_a[at] is values_b[at]
    assert values_b[shape_b.keys.index("id")] is own_id


def test_the_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shapes and shared strings are remembered up to a bound, then afresh: never unbounded."""
    monkeypatch.setattr(_seen, "MAX_SHARED_STRINGS", 8)
    monkeypatch.setattr(_seen, "MAX_SHAPES", 2)
    snapshots = Snapshots()
    for i in range(20):
        raw = item(f"{i:024}", name=f"name {i}", **{f"key{i}": "x"})  # a new shape each time
        snapshots.share(raw, raw["id"])
        assert snapshots.take(raw) is not None
        assert len(snapshots._strings) <= 8 and len(snapshots._shapes) <= 2
