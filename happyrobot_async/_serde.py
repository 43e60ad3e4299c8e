"""The one cattrs converter, built and configured once, here, at import.

Lenient where the server speaks (`Model`: unknown keys ignored, optional keys
defaulted, unknown statuses kept as `UNKNOWN`); strict where we own the data
(every other class, e.g. the journal's records: unknown keys refused). Strict
about types everywhere: a string where a bool belongs is an error, never
silently coerced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .types import Model, ModelStatus

__all__: list[str] = []

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True)


def _strict(kind: type[Any]) -> Any:
    def hook(value: Any, _: Any) -> Any:
        # bool is an int subclass: keep it out of int fields, and vice versa.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


for _kind in (str, bool, int):
    converter.register_structure_hook(_kind, _strict(_kind))


def _structure_datetime(value: Any, _: Any) -> datetime:
    """Any RFC 3339 spelling: `Z` or `z`, `T` or `t` or a space, offsets, any fraction."""
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 date-time string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = _rfc3339_rarities(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _rfc3339_rarities(value: str) -> datetime:
    # Lowercase `t`/`z` (RFC 3339 allows them); a leap second, read as :59.
    text = value.upper()
    if text[17:19] == "60":
        text = text[:17] + "59" + text[19:]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}") from None


def _structure_status(value: Any, _: Any) -> ModelStatus:
    if not isinstance(value, str):
        raise TypeError(f"expected a status string, got {type(value).__name__}")
    return ModelStatus(value)


def _optional(kind: type[Any]) -> Any:
    # cattrs would dispatch on the inner type of `X | None` at every call; this is
    # the same check, done directly (a hot path: the watcher structures every list item).
    def hook(value: Any, _: Any) -> Any:
        if value is None or type(value) is kind:
            return value
        raise TypeError(f"expected {kind.__name__} or null, got {type(value).__name__}")

    return hook


def _structure_ids(value: Any, _: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if type(value) is list and all(type(item) is str for item in value):
        return tuple(value)
    return converter.structure(value, tuple[str, ...])  # the slow path names the bad item


converter.register_structure_hook(str | None, _optional(str))
converter.register_structure_hook(bool | None, _optional(bool))
converter.register_structure_hook(tuple[str, ...] | None, _structure_ids)
converter.register_structure_hook(datetime, _structure_datetime)
converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
converter.register_structure_hook(ModelStatus, _structure_status)
converter.register_structure_hook(
    Model,
    make_dict_structure_fn(
        Model, converter, _cattrs_forbid_extra_keys=False, raw_status=override(rename="status")
    ),
)


def structure(data: Any, cls: type[T]) -> T:
    """Structure `data` into `cls` with the SDK's converter."""
    return converter.structure(data, cls)


def unstructure(value: Any) -> Any:
    """Unstructure `value` into JSON-ready data with the SDK's converter."""
    return converter.unstructure(value)
