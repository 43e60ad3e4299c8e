"""The simulator's database: organizations, API keys and models, all seeded."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ._models import ModelRecord
from ._validate import CreateRequest, ListQuery, RequestError


def _check_range(
    _: object, attribute: attrs.Attribute[tuple[float, float]], value: tuple[float, float]
) -> None:
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"{attribute.name} must be (low, high) with 0 <= low <= high")


def _as_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    return (float(low), float(high))


@attrs.frozen(kw_only=True)
class Lifecycle:
    """How long models stay pending and training (simulated seconds) and how often they fail."""

    pending_seconds: tuple[float, float] = attrs.field(
        default=(1.0, 3.0), converter=_as_range, validator=_check_range
    )
    training_seconds: tuple[float, float] = attrs.field(
        default=(3.0, 10.0), converter=_as_range, validator=_check_range
    )
    failure_rate: float = attrs.field(default=0.1, converter=float)

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be within 0..1")


def utc_now_text() -> str:
    """Real wall-clock UTC time as the API writes it: whole seconds, `Z` suffix."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_Raw = tuple[int, Any]


@attrs.define
class Store:
    """Organizations (each with seeded use cases and base models), keys, and models.

    Two RNGs derived from the seed keep ids and fates reproducible independently:
    the same seed and the same sequence of calls give the same ids, durations and
    outcomes. `stamp` writes `created_at` (the server's wall clock). Raw items are
    JSON sent as-is among a use case's models (positioned in creation order).
    """

    seed: int
    now: Callable[[], float]
    lifecycle: Lifecycle
    use_cases_per_org: int = 3
    base_models_per_use_case: int = 2
    stamp: Callable[[], str] = utc_now_text
    #: Keys that authenticate but are refused (403).
    forbidden_keys: set[str] = attrs.field(init=False, factory=set)
    _ids: random.Random = attrs.field(init=False)
    _fates: random.Random = attrs.field(init=False)
    _keys: dict[str, str] = attrs.field(init=False, factory=dict)
    _use_cases: dict[str, list[str]] = attrs.field(init=False, factory=dict)
    _base_models: dict[str, list[str]] = attrs.field(init=False, factory=dict)
    _models: dict[str, ModelRecord] = attrs.field(init=False, factory=dict)
    _by_org: dict[str, list[ModelRecord]] = attrs.field(init=False, factory=dict)
    _by_use_case: dict[tuple[str, str], list[ModelRecord]] = attrs.field(init=False, factory=dict)
    # (position among the models, item) per organization and per (organization, use case)
    _raw_by_org: dict[str, list[_Raw]] = attrs.field(init=False, factory=dict)
    _raw_by_use_case: dict[tuple[str, str], list[_Raw]] = attrs.field(init=False, factory=dict)
    _raw_by_id: dict[tuple[str, str], Any] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._ids = random.Random(f"happyrobot-simulator:{self.seed}:ids")
        self._fates = random.Random(f"happyrobot-simulator:{self.seed}:fates")

    def new_id(self) -> str:
        """Return a fresh 24-character lowercase hex id."""
        while True:
            candidate = f"{self._ids.getrandbits(96):024x}"
            if candidate not in self._models and candidate not in self._use_cases:
                return candidate

    def add_organization(self, organization_id: str | None = None) -> str:
        """Create an organization with its seeded use cases and base models."""
        org = organization_id or self.new_id()
        if org in self._by_org:
            return org
        self._by_org[org] = []
        self._use_cases[org] = []
        for _ in range(self.use_cases_per_org):
            use_case = self.new_id()
            self._use_cases[org].append(use_case)
            self._base_models[use_case] = []
            for number in range(1, self.base_models_per_use_case + 1):
                record = ModelRecord(
                    id=self.new_id(),
                    organization_id=org,
                    use_case_id=use_case,
                    name=f"Base model {number}",
                    description=f"Base model {number} for use case {use_case}",
                    created_at=self.stamp(),
                    created_sim=self.now(),
                    pending_seconds=0.0,
                    training_seconds=0.0,
                    outcome="active",
                    trainable=True,
                    is_base=True,
                )
                self._insert(record)
                self._base_models[use_case].append(record.id)
        return org

    def add_api_key(self, organization_id: str | None = None, *, forbidden: bool = False) -> str:
        """Return a new API key for `organization_id` (a new organization if None)."""
        org = self.add_organization(organization_id)
        key = f"hr_sim_{self._ids.getrandbits(128):032x}"
        self._keys[key] = org
        if forbidden:
            self.forbidden_keys.add(key)
        return key

    def organization_of(self, api_key: str) -> str | None:
        """Return the organization an API key belongs to, or None if the key is unknown."""
        return self._keys.get(api_key)

    def use_case_ids(self, organization_id: str) -> list[str]:
        """Return the seeded use cases of an organization."""
        return list(self._use_cases.get(organization_id, ()))

    def base_model_ids(self, use_case_id: str) -> list[str]:
        """Return the seeded base models of a use case."""
        return list(self._base_models.get(use_case_id, ()))

    def create(self, organization_id: str, request: CreateRequest) -> ModelRecord:
        """Store a new model cloned from `from_model_id`; 422 if that model is unknown."""
        if self.get(organization_id, request.from_model_id) is None:
            raise RequestError(422, f"from_model_id: unknown model {request.from_model_id}")
        lifecycle = self.lifecycle
        record = ModelRecord(
            id=self.new_id(),
            organization_id=organization_id,
            use_case_id=request.use_case_id,
            name=request.name,
            description=f"Fine-tuned from {request.from_model_id}",
            created_at=self.stamp(),
            created_sim=self.now(),
            pending_seconds=self._fates.uniform(*lifecycle.pending_seconds),
            training_seconds=self._fates.uniform(*lifecycle.training_seconds),
            outcome="failed" if self._fates.random() < lifecycle.failure_rate else "active",
            from_model_id=request.from_model_id,
            train_sample_ids=request.train_sample_ids,
            test_sample_ids=request.test_sample_ids,
            explain_tools=request.explain_tools,
        )
        self._insert(record)
        return record

    def get(self, organization_id: str, model_id: str) -> ModelRecord | None:
        """Return a model if it exists and belongs to the organization."""
        record = self._models.get(model_id)
        if record is None or record.organization_id != organization_id:
            return None
        return record

    def find(self, organization_id: str, query: ListQuery) -> list[ModelRecord]:
        """Return the organization's models matching the filters, in creation order."""
        now = self.now()
        if query.use_case_id is None:
            candidates = self._by_org.get(organization_id, [])
        else:
            candidates = self._by_use_case.get((organization_id, query.use_case_id), [])
        return [
            record
            for record in candidates
            if (query.trainable is None or record.trainable == query.trainable)
            and (query.status is None or record.status_at(now) == query.status)
        ]

    def add_raw_item(self, use_case_id: str, item: Any) -> None:
        """Store JSON sent as-is among the use case's models, after the ones stored so far."""
        org = next((org for org, ids in self._use_cases.items() if use_case_id in ids), None)
        if org is None:
            raise KeyError(f"unknown use case {use_case_id!r}")
        item = json.loads(json.dumps(item))  # a copy, and a TypeError now if not JSON
        key = (org, use_case_id)
        self._raw_by_org.setdefault(org, []).append((len(self._by_org[org]), item))
        in_use_case = len(self._by_use_case.get(key, ()))
        self._raw_by_use_case.setdefault(key, []).append((in_use_case, item))
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            self._raw_by_id[(org, item["id"])] = item

    def has_raw_items(self, organization_id: str) -> bool:
        """Tell whether the organization holds raw items (only then is a list merged)."""
        return organization_id in self._raw_by_org

    def raw_item(self, organization_id: str, item_id: str) -> Any:
        """Return the organization's raw item with this id, or None."""
        return self._raw_by_id.get((organization_id, item_id))

    def find_with_raw(self, organization_id: str, query: ListQuery) -> list[ModelRecord | Any]:
        """Like `find`, with the raw items (whatever the filters) in their places."""
        if query.use_case_id is None:
            raw = self._raw_by_org.get(organization_id, [])
        else:
            raw = self._raw_by_use_case.get((organization_id, query.use_case_id), [])
        found: list[ModelRecord | Any] = []
        items = iter(raw)
        pending = next(items, None)
        for index, record in enumerate(self._candidates(organization_id, query)):
            while pending is not None and pending[0] <= index:
                found.append(pending[1])
                pending = next(items, None)
            if record is not None:
                found.append(record)
        if pending is not None:
            found.extend([pending[1], *(item for _, item in items)])
        return found

    def _candidates(self, organization_id: str, query: ListQuery) -> Iterator[ModelRecord | None]:
        """Yield every candidate of `find`, or None where one does not match the filters."""
        now = self.now()
        if query.use_case_id is None:
            candidates = self._by_org.get(organization_id, [])
        else:
            candidates = self._by_use_case.get((organization_id, query.use_case_id), [])
        for record in candidates:
            matches = (query.trainable is None or record.trainable == query.trainable) and (
                query.status is None or record.status_at(now) == query.status
            )
            yield record if matches else None

    def record(self, model_id: str) -> ModelRecord:
        """Return any model by id, whatever its organization (KeyError if unknown)."""
        return self._models[model_id]

    def all(self) -> list[ModelRecord]:
        """Return every model, base models included, in creation order."""
        return list(self._models.values())

    def _insert(self, record: ModelRecord) -> None:
        self._models[record.id] = record
        self._by_org[record.organization_id].append(record)
        key = (record.organization_id, record.use_case_id)
        self._by_use_case.setdefault(key, []).append(record)
