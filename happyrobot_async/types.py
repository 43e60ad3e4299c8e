"""The values the SDK speaks in: models, statuses, create requests, status changes."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from .errors import InvalidRequestError

__all__ = ["CreateModel", "Model", "ModelStatus", "StatusChange", "TrainingJob"]

MODEL_ID_LENGTH = 24
_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")


class ModelStatus(enum.StrEnum):
    """Where a model is in `pending → training → active | failed`."""

    PENDING = "pending"
    TRAINING = "training"
    ACTIVE = "active"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """Any status this SDK does not know; the server's string is on `Model.raw_status`."""

    @classmethod
    def _missing_(cls, value: object) -> ModelStatus:
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """True once training is over: `ACTIVE` or `FAILED`."""
        return self in (ModelStatus.ACTIVE, ModelStatus.FAILED)


@attrs.frozen
class Model:
    """A model as the API returns it; list results carry no sample ids (None)."""

    id: str
    created_at: datetime
    status: ModelStatus
    name: str
    raw_status: str = attrs.field(
        default=attrs.Factory(lambda self: self.status.value, takes_self=True)
    )
    """The server's own status string, kept when `status` is `UNKNOWN`."""
    organization_id: str | None = None
    use_case_id: str | None = None
    description: str | None = None
    from_model_id: str | None = None
    train_sample_ids: tuple[str, ...] | None = None
    test_sample_ids: tuple[str, ...] | None = None
    trainable: bool = False
    use_backup_for_generations: bool = False
    use_backup_when_idle: bool = False
    provider: str | None = None
    explain_tools: bool | None = None
    compressed: bool | None = None
    compressed_version: str | None = None

    def __repr__(self) -> str:
        return f"Model(id={self.id!r}, name={self.name!r}, status={self.raw_status!r})"


@attrs.frozen
class StatusChange:
    """One observed transition of one model; `previous` is None at the first sighting."""

    model: Model
    previous: ModelStatus | None
    current: ModelStatus
    at: datetime


def check_model_id(value: object, field: str = "model_id") -> str:
    """Return `value` if it is a model id (exactly 24 characters), else refuse it."""
    if not isinstance(value, str):
        raise InvalidRequestError(field, f"must be a string, not {type(value).__name__}")
    if len(value) != MODEL_ID_LENGTH:
        raise InvalidRequestError(
            field, f"must be exactly {MODEL_ID_LENGTH} characters, got {len(value)}"
        )
    if not _ID_CHARACTERS.fullmatch(value):
        # it goes into a URL path: no "/", "%", "?", spaces or other reserved characters
        raise InvalidRequestError(field, "must be letters, digits, '-', '_', '.' or '~' only")
    return value


def _non_empty_string(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidRequestError(attribute.name, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidRequestError(attribute.name, "must not be empty")
    _check_encodable(attribute.name, value)


def _check_encodable(field: str, value: str) -> None:
    """A string JSON can carry: no lone surrogates (they cannot be UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(field, "holds a character that is not valid Unicode") from None


def _model_id(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    check_model_id(value, attribute.name)


def _as_tuple(value: Sequence[str]) -> tuple[str, ...]:
    """Freeze a list of ids; anything else passes through for the validator to refuse."""
    return tuple(value) if isinstance(value, list | tuple) else value  # type: ignore[return-value]


def _sample_ids(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple):
        raise InvalidRequestError(
            attribute.name, f"must be a list of sample ids, not {type(value).__name__}"
        )
    try:  # the common case, every id fine, checked in one pass of C loops
        if all(map(str.strip, value)):
            "".join(value).encode("utf-8")
            return
    except (TypeError, UnicodeEncodeError):
        pass
    for index, item in enumerate(value):  # something is wrong: find it and name it
        if not isinstance(item, str) or not item.strip():
            raise InvalidRequestError(
                f"{attribute.name}[{index}]", f"must be a non-empty string, got {item!r}"
            )
        _check_encodable(f"{attribute.name}[{index}]", item)


def _bool(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidRequestError(attribute.name, f"must be true or false, not {value!r}")


@attrs.frozen(kw_only=True)
class CreateModel:
    """A validated `POST /models` body: clone `from_model_id`, train it on the samples.

    Building one checks every field, so a bad argument fails here, before any I/O.
    """

    use_case_id: str = attrs.field(validator=_non_empty_string)
    name: str = attrs.field(validator=_non_empty_string)
    from_model_id: str = attrs.field(validator=_model_id)
    train_sample_ids: tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_sample_ids)
    test_sample_ids: tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_sample_ids)
    explain_tools: bool = attrs.field(default=True, validator=_bool)


@attrs.frozen(kw_only=True)
class TrainingJob(CreateModel):
    """One job of a batch: a create, plus an optional `key` of the caller's to find it by."""

    key: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_non_empty_string)
    )

    @property
    def label(self) -> str:
        """How to name this job to a person: its key, else use case and name."""
        return self.key or f"{self.use_case_id}/{self.name}"
