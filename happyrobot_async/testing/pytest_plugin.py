"""Pytest fixtures that run the simulator: enable with `pytest_plugins = [__name__ of this]`.

`simulator` is a running default `Simulator`; `simulator_factory` starts
simulators with custom settings (`await simulator_factory(seed=1, faults=[...])`)
and closes all of them at teardown. Both need pytest-asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest_asyncio

from ._simulator import Simulator


class SimulatorFactory(Protocol):
    """Start a `Simulator` with the given keyword arguments."""

    async def __call__(self, **settings: Any) -> Simulator: ...


@pytest_asyncio.fixture
async def simulator_factory() -> AsyncIterator[SimulatorFactory]:
    """Start simulators on demand; every one is closed when the test ends."""
    started: list[Simulator] = []

    async def make(**settings: Any) -> Simulator:
        sim = Simulator(**settings)
        await sim.start()
        started.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in reversed(started):
            await sim.close()


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """A running simulator with default settings (seed 0)."""
    async with Simulator() as sim:
        yield sim
