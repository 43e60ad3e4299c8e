"""A simulator of HappyRobot's models API, for testing code that uses it.

`Simulator` is a real aiohttp server on 127.0.0.1 with seeded ids, a lifecycle
driven by a speedable clock, faults on demand and hostile-server knobs (a skewed
wall clock, other `created_at` spellings, raw items, forbidden keys). It does not
import the client.
"""

from __future__ import annotations

from ._clock import SimClock, TimestampFormat
from ._faults import Fault, FaultKind, Route
from ._models import OptionalFields, SimModel
from ._simulator import Simulator
from ._stats import RequestLogEntry, SimulatorStats

__all__ = [
    "Fault",
    "FaultKind",
    "OptionalFields",
    "RequestLogEntry",
    "Route",
    "SimClock",
    "SimModel",
    "Simulator",
    "SimulatorStats",
    "TimestampFormat",
]
