"""The converter's `Model` hook: its one-step common case agrees with cattrs' checked path."""

from __future__ import annotations

from typing import Any

import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from happyrobot_async._serde import _structure_model_checked, converter
from happyrobot_async.types import Model, ModelStatus

FULL: dict[str, Any] = {
    "id": "65a1f0c2e4b0a1b2c3d4e000",
    "created_at": "2024-05-01T12:00:00.123456Z",
    "status": "training",
    "name": "support-v2",
    "organization_id": "65a1f0c2e4b0a1b2c3d4e002",
    "use_case_id": "65a1f0c2e4b0a1b2c3d4e001",
    "description": None,
    "from_model_id": "65a1f0c2e4b0a1b2c3d4e003",
    "train_sample_ids": ["65a1f0c2e4b0a1b2c3d4e004", "65a1f0c2e4b0a1b2c3d4e005"],
    "test_sample_ids": ["65a1f0c2e4b0a1b2c3d4e006"],
    "trainable": True,
    "use_backup_for_generations": False,
    "use_backup_when_idle": False,
    "provider": "openai",
    "explain_tools": True,
    "compressed": None,
    "compressed_version": None,
    "updated_at": "2024-05-01T12:00:01Z",
}

# Values each key may take: the right JSON type, and the wrong ones a hostile server sends.
ODD_VALUES = [
    None,
    True,
    False,
    0,
    1.5,
    "",
    "x",
    "pending",
    "ACTIVE",
    "2024-05-01T12:00:00",
    "2024-05-01t12:00:00z",
    "2024-05-01 12:00:00+02:00",
    "2016-12-31T23:59:60Z",
    "yesterday",
    [],
    ["65a1f0c2e4b0a1b2c3d4e004"],
    ["a", 1],
    [None],
    {},
    {"id": "x"},
]


def outcome(structure: Any, data: Any) -> Model | str:
    """What structuring gives: the model, or the error's type and message."""
    try:
        return structure(data, Model)  # type: ignore[no-any-return]
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_a_full_model_takes_the_common_case_and_equals_the_checked_path() -> None:
    """Every documented field of its JSON type: the same `Model` as cattrs builds."""
    model = converter.structure(FULL, Model)
    assert model == _structure_model_checked(FULL, Model)
    assert model.status is ModelStatus.TRAINING
    assert model.train_sample_ids == ("65a1f0c2e4b0a1b2c3d4e004", "65a1f0c2e4b0a1b2c3d4e005")
    assert model.created_at.tzinfo is not None


@pytest.mark.parametrize(
    "change",
    [
        {"status": "archived"},
        {"created_at": "2024-05-01T12:00:00"},
        {"created_at": "2024-05-01t12:00:00z"},
        {"created_at": "2016-12-31T23:59:60Z"},
        {"trainable": "true"},
        {"train_sample_ids": ["a", 1]},
        {"explain_tools": 1},
        {"name": 7},
    ],
)
def test_odd_fields_get_the_checked_paths_answer(change: dict[str, Any]) -> None:
    """Unknown statuses, rare date spellings and wrong types: exactly what cattrs answers."""
    data = {**FULL, **change}
    assert outcome(converter.structure, data) == outcome(_structure_model_checked, data)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={key: st.sampled_from([FULL[key], *ODD_VALUES]) for key in FULL},
    )
)
def test_any_object_structures_as_the_checked_path_does(data: dict[str, Any]) -> None:
    """For any mix of present, missing and mistyped fields, the hook and cattrs agree."""
    assert outcome(converter.structure, data) == outcome(_structure_model_checked, data)


@pytest.mark.parametrize("data", [None, [], "model", 3])
def test_a_non_object_gets_the_checked_paths_error(data: Any) -> None:
    """Not a JSON object at all: the same error as cattrs gives."""
    assert outcome(converter.structure, data) == outcome(_structure_model_checked, data)
