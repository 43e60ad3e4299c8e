"""Pytest fixtures that run the simulator.

Enable with `pytest_plugins = ["happyrobot_async.testing.pytest_plugin"]` in a
conftest.py. The fixtures are async: they need pytest-asyncio, with either
`asyncio_mode = "auto"` in your pytest configuration or
`@pytest.mark.asyncio` on each test (set `asyncio_default_fixture_loop_scope =
"function"` too, to silence pytest-asyncio's warning about it).

- `simulator`: a running default `Simulator` (seed 0);
- `simulator_factory`: starts simulators with custom settings
  (`await simulator_factory(seed=1, faults=[...])`), all closed at teardown;
- `happyrobot_client`: a `HappyRobotClient` connected to `simulator`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest_asyncio

from ..client import HappyRobotClient
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


@pytest_asyncio.fixture
async def happyrobot_client(simulator: Simulator) -> AsyncIterator[HappyRobotClient]:
    """A client of `simulator`, with its key and base URL; closed at teardown."""
    async with HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        yield client
