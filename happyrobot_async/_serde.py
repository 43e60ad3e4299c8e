"""The one cattrs converter, built and configured once, here, at import.

Lenient where the server speaks (`Model`: unknown keys ignored, optional keys
defaulted, unknown statuses kept as `UNKNOWN`); strict where we own the data
(every other class, e.g. the journal's records: unknown keys refused). Strict
about types everywhere: a string where a bool belongs is an error, never
silently coerced.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

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
    if type(value) is not list:  # cattrs would make a tuple of any iterable: a string's letters
        raise TypeError(f"expected an array of strings, got {type(value).__name__}")
    if all(type(item) is str for item in value):
        return tuple(value)
    return converter.structure(value, tuple[str, ...])  # the slow path names the bad item


converter.register_structure_hook(str | None, _optional(str))
converter.register_structure_hook(bool | None, _optional(bool))
converter.register_structure_hook(tuple[str, ...] | None, _structure_ids)
converter.register_structure_hook(datetime, _structure_datetime)
converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
converter.register_structure_hook(ModelStatus, _structure_status)

# What cattrs generates from the hooks above: the rules of record, and the
# error that names the field at fault.
_structure_model_checked = make_dict_structure_fn(
    Model, converter, _cattrs_forbid_extra_keys=False, raw_status=override(rename="status")
)
_STATUSES: Final = {status.value: status for status in ModelStatus}


def _structure_model(value: Any, _: Any) -> Model:
    """A `Model` from a decoded JSON object: the hot path of every call and poll.

    The common case, every field present or absent with its documented JSON
    type, is built here in one step, with the same rules as the hooks above;
    anything else (a wrong type, a missing field, a rare date spelling) goes
    through `_structure_model_checked`, which applies them field by field and
    names the field at fault. A test holds the two to the same results.
    """
    if type(value) is not dict:
        return _structure_model_checked(value, Model)
    get: Callable[..., Any] = value.get
    model_id, created, status, name = get("id"), get("created_at"), get("status"), get("name")
    organization_id, use_case_id = get("organization_id"), get("use_case_id")
    description, from_model_id = get("description"), get("from_model_id")
    provider, compressed_version = get("provider"), get("compressed_version")
    train, test = get("train_sample_ids"), get("test_sample_ids")
    trainable = get("trainable", False)
    backup_generations = get("use_backup_for_generations", False)
    backup_idle = get("use_backup_when_idle", False)
    explain_tools, compressed = get("explain_tools"), get("compressed")
    plain = (
        type(model_id) is str
        and type(created) is str
        and type(status) is str
        and type(name) is str
        and _optional_strings(
            organization_id, use_case_id, description, from_model_id, provider, compressed_version
        )
        and type(trainable) is bool
        and type(backup_generations) is bool
        and type(backup_idle) is bool
        and (explain_tools is None or type(explain_tools) is bool)
        and (compressed is None or type(compressed) is bool)
        and _ids(train)
        and _ids(test)
    )
    if not plain:
        return _structure_model_checked(value, Model)
    try:
        created_at = datetime.fromisoformat(created)
    except ValueError:
        return _structure_model_checked(value, Model)
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return Model(
        model_id,
        created_at,
        _STATUSES.get(status, ModelStatus.UNKNOWN),
        name,
        status,
        organization_id,
        use_case_id,
        description,
        from_model_id,
        None if train is None else tuple(train),
        None if test is None else tuple(test),
        trainable,
        backup_generations,
        backup_idle,
        provider,
        explain_tools,
        compressed,
        compressed_version,
    )


def _optional_strings(*values: object) -> bool:
    for value in values:  # noqa: SIM110 (a loop, not all(...): no generator on the hot path)
        if value is not None and type(value) is not str:
            return False
    return True


def _ids(value: object) -> bool:
    """None, or a JSON array of strings."""
    if value is None:
        return True
    if type(value) is not list:
        return False
    for item in value:  # noqa: SIM110 (as above)
        if type(item) is not str:
            return False
    return True


converter.register_structure_hook(Model, _structure_model)


def structure(data: Any, cls: type[T]) -> T:
    """Structure `data` into `cls` with the SDK's converter."""
    return converter.structure(data, cls)


def unstructure(value: Any) -> Any:
    """Unstructure `value` into JSON-ready data with the SDK's converter."""
    return converter.unstructure(value)
