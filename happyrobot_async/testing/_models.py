"""Model records, their lifecycle, and how they are rendered as JSON."""

from __future__ import annotations

from typing import Any, Literal

import attrs

OptionalFields = Literal["present", "omitted", "null"]
OPTIONAL_FIELDS_MODES: tuple[str, ...] = ("present", "omitted", "null")
STATUSES: tuple[str, ...] = ("pending", "training", "active", "failed")

_REQUIRED_KEYS = frozenset({"id", "created_at", "status", "name"})
_NULLABLE_KEYS = ("organization_id", "use_case_id")


@attrs.define(slots=True)
class ModelRecord:
    """One stored model: what was asked for, plus its fate (decided at creation).

    The status is not stored; `status_at(now)` derives it from the simulated clock,
    so ten thousand models cost nothing until somebody reads them.
    """

    id: str
    organization_id: str
    use_case_id: str
    name: str
    created_at: str
    created_sim: float
    pending_seconds: float
    training_seconds: float
    outcome: Literal["active", "failed"]
    description: str = ""
    from_model_id: str | None = None
    train_sample_ids: tuple[str, ...] = ()
    test_sample_ids: tuple[str, ...] = ()
    trainable: bool = False
    explain_tools: bool = True
    is_base: bool = False
    pinned_status: str | None = None

    def status_at(self, now: float) -> str:
        """Return the status at simulated time `now` (a pinned status wins)."""
        if self.pinned_status is not None:
            return self.pinned_status
        elapsed = now - self.created_sim
        if elapsed < self.pending_seconds:
            return "pending"
        if elapsed < self.pending_seconds + self.training_seconds:
            return "training"
        return self.outcome

    def to_json(
        self,
        now: float,
        *,
        summary: bool = False,
        extra_fields: bool = False,
        optional_fields: OptionalFields = "present",
    ) -> dict[str, Any]:
        """Render as the API does: a full Model, or a list item (`summary`, no sample ids)."""
        body: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "status": self.status_at(now),
            "name": self.name,
            "organization_id": self.organization_id,
            "use_case_id": self.use_case_id,
            "description": self.description,
        }
        if not summary:
            body["train_sample_ids"] = list(self.train_sample_ids)
            body["test_sample_ids"] = list(self.test_sample_ids)
        if self.from_model_id is not None:
            body["from_model_id"] = self.from_model_id
        body["trainable"] = self.trainable
        body["use_backup_for_generations"] = False
        body["use_backup_when_idle"] = False
        if optional_fields == "omitted":
            body = {key: value for key, value in body.items() if key in _REQUIRED_KEYS}
        elif optional_fields == "null":
            for key in _NULLABLE_KEYS:
                body[key] = None
        if extra_fields:
            body["provider"] = "happyrobot"
            body["explain_tools"] = self.explain_tools
            body["compressed"] = False
            body["compressed_version"] = "v0"
        return body

    def view(self, now: float) -> SimModel:
        """Return a frozen snapshot for tests, with the current status."""
        return SimModel(
            id=self.id,
            organization_id=self.organization_id,
            use_case_id=self.use_case_id,
            name=self.name,
            status=self.status_at(now),
            created_at=self.created_at,
            description=self.description,
            from_model_id=self.from_model_id,
            train_sample_ids=self.train_sample_ids,
            test_sample_ids=self.test_sample_ids,
            trainable=self.trainable,
            explain_tools=self.explain_tools,
            is_base=self.is_base,
            outcome=self.outcome,
            pending_seconds=self.pending_seconds,
            training_seconds=self.training_seconds,
            pinned_status=self.pinned_status,
        )


@attrs.frozen(kw_only=True)
class SimModel:
    """The server's truth about one model at one moment, for assertions in tests."""

    id: str
    organization_id: str
    use_case_id: str
    name: str
    status: str
    created_at: str
    description: str
    from_model_id: str | None
    train_sample_ids: tuple[str, ...]
    test_sample_ids: tuple[str, ...]
    trainable: bool
    explain_tools: bool
    is_base: bool
    outcome: str
    pending_seconds: float
    training_seconds: float
    pinned_status: str | None
