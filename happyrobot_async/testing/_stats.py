"""What the simulator saw: request counts, faults, concurrency, models per name."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class RequestLogEntry:
    """One API request as the simulator saw it.

    `time` is `time.monotonic()` at arrival; `fault` is the fault that shaped the
    response ("latency" only if nothing else fired), or None.
    """

    method: str
    route: str
    path: str
    status: str
    time: float
    fault: str | None
    has_auth: bool

    def to_json(self) -> dict[str, Any]:
        """Render as a JSON object."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class SimulatorStats:
    """A snapshot of the counters since the last reset.

    `requests[route][status]` counts API requests; `status` is the HTTP status as a
    string, "drop" when the connection was dropped without a response, or "hang"
    when a hang fault held it until the client left or the simulator closed. Routes are
    "create", "get", "list" and "other" (anything else under /api/v1).
    `models_by_name[(organization_id, use_case_id, name)]` counts models created
    through the API; `duplicates` is the number of those keys holding more than one.
    """

    requests: dict[str, dict[str, int]]
    total_requests: int
    models_created: int
    models_by_name: dict[tuple[str, str, str], int]
    duplicates: int
    faults: dict[str, int]
    in_flight: int
    max_in_flight: int
    log: tuple[RequestLogEntry, ...]

    def count(self, route: str, status: int | str | None = None) -> int:
        """Return the number of requests to `route`, optionally only those with `status`."""
        by_status = self.requests.get(route, {})
        if status is None:
            return sum(by_status.values())
        return by_status.get(str(status), 0)

    def to_json(self) -> dict[str, Any]:
        """Render as the `/_simulator/stats` JSON document."""
        return {
            "requests": self.requests,
            "total_requests": self.total_requests,
            "models_created": self.models_created,
            "models_by_name": [
                {"organization_id": org, "use_case_id": use_case, "name": name, "count": count}
                for (org, use_case, name), count in self.models_by_name.items()
            ],
            "duplicates": self.duplicates,
            "faults": self.faults,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "log": [entry.to_json() for entry in self.log],
        }


@attrs.define
class StatsRecorder:
    """Mutable counters behind `SimulatorStats`; the log keeps the last `log_size` entries."""

    log_size: int = 10_000
    _requests: dict[str, Counter[str]] = attrs.field(init=False, factory=dict)
    _models_by_name: Counter[tuple[str, str, str]] = attrs.field(init=False, factory=Counter)
    _faults: Counter[str] = attrs.field(init=False, factory=Counter)
    _log: deque[RequestLogEntry] = attrs.field(init=False)
    _total: int = attrs.field(init=False, default=0)
    _created: int = attrs.field(init=False, default=0)
    _duplicates: int = attrs.field(init=False, default=0)
    in_flight: int = attrs.field(init=False, default=0)
    _max_in_flight: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._log = deque(maxlen=self.log_size)

    def enter(self) -> None:
        """Note an API request starting."""
        self.in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self.in_flight)

    def leave(self, entry: RequestLogEntry, faults: Iterable[str] = ()) -> None:
        """Note an API request finishing (or dropped), with every fault injected into it."""
        self.in_flight -= 1
        self._total += 1
        self._requests.setdefault(entry.route, Counter())[entry.status] += 1
        self._faults.update(faults)
        self._log.append(entry)

    def model_created(self, organization_id: str, use_case_id: str, name: str) -> None:
        """Count a model stored through the API."""
        key = (organization_id, use_case_id, name)
        self._created += 1
        self._models_by_name[key] += 1
        if self._models_by_name[key] == 2:
            self._duplicates += 1

    def reset(self) -> None:
        """Zero every counter and clear the log (requests in flight stay in flight)."""
        self._requests.clear()
        self._models_by_name.clear()
        self._faults.clear()
        self._log.clear()
        self._total = self._created = self._duplicates = 0
        self._max_in_flight = self.in_flight

    def snapshot(self) -> SimulatorStats:
        """Return a copy of the counters."""
        return SimulatorStats(
            requests={route: dict(counts) for route, counts in self._requests.items()},
            total_requests=self._total,
            models_created=self._created,
            models_by_name=dict(self._models_by_name),
            duplicates=self._duplicates,
            faults=dict(self._faults),
            in_flight=self.in_flight,
            max_in_flight=self._max_in_flight,
            log=tuple(self._log),
        )
