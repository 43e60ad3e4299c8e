"""Client-side validation of create requests and ids, before any I/O."""

from __future__ import annotations

from typing import Any

import pytest

import happyrobot_async as hr

GOOD: dict[str, Any] = {
    "use_case_id": "65a1f0c2e4b0a1b2c3d4e5f6",
    "name": "agent",
    "from_model_id": "65a1f0c2e4b0a1b2c3d4e5f7",
    "train_sample_ids": ["s1", "s2"],
    "test_sample_ids": ["s3"],
}

BAD = [
    ({"use_case_id": ""}, "use_case_id"),
    ({"use_case_id": None}, "use_case_id"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": 7}, "name"),
    ({"from_model_id": "short"}, "from_model_id"),
    ({"from_model_id": "x" * 25}, "from_model_id"),
    ({"from_model_id": None}, "from_model_id"),
    ({"train_sample_ids": "s1"}, "train_sample_ids"),
    ({"train_sample_ids": None}, "train_sample_ids"),
    ({"train_sample_ids": {"s1"}}, "train_sample_ids"),
    ({"train_sample_ids": ["ok", ""]}, "train_sample_ids[1]"),
    ({"test_sample_ids": [3]}, "test_sample_ids[0]"),
    ({"test_sample_ids": "s3"}, "test_sample_ids"),
    ({"explain_tools": "yes"}, "explain_tools"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_create_field_is_named(change: dict[str, Any], field: str) -> None:
    """Each bad create argument raises InvalidRequestError (a ValueError) naming its field."""
    with pytest.raises(hr.InvalidRequestError) as info:
        hr.CreateModel(**{**GOOD, **change})
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)


def test_good_create_freezes_sample_ids() -> None:
    """Lists of sample ids are stored as tuples, so the request cannot change after checks."""
    create = hr.CreateModel(**GOOD)
    assert create.train_sample_ids == ("s1", "s2")
    assert create.explain_tools is True


def test_status_terminal_set() -> None:
    """Only ACTIVE and FAILED are terminal; an unknown status is not."""
    assert {s for s in hr.ModelStatus if s.is_terminal} == {
        hr.ModelStatus.ACTIVE,
        hr.ModelStatus.FAILED,
    }
    assert hr.ModelStatus("canceled") is hr.ModelStatus.UNKNOWN
