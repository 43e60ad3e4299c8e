"""Shared fixtures: the simulator plugin, an HTTP session, and a tiny API caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import attrs
import pytest

import happyrobot_async as hr
from happyrobot_async.testing import Simulator

pytest_plugins = ["happyrobot_async.testing.pytest_plugin"]


@attrs.frozen
class Reply:
    """One HTTP response, fully read: status, headers, text and JSON (None if not JSON)."""

    status: int
    headers: dict[str, str]
    text: str
    body: Any


@attrs.define
class Api:
    """Raw HTTP calls to a simulator, authenticated with `key` (default: the sim's key)."""

    session: aiohttp.ClientSession
    sim: Simulator
    key: str | None = None

    def headers(self) -> dict[str, str]:
        """Return the auth header for `key`."""
        return {"authorization": f"Bearer {self.key or self.sim.api_key}"}

    def create_body(self, use_case: int = 0, **overrides: Any) -> dict[str, Any]:
        """Return a valid create body for the sim's `use_case`-th use case."""
        use_case_id = self.sim.use_case_ids[use_case]
        body: dict[str, Any] = {
            "use_case_id": use_case_id,
            "name": "Carrier sales agent v2",
            "from_model_id": self.sim.base_model_ids(use_case_id)[0],
            "train_sample_ids": ["65a1f0c2e4b0a1b2c3d4e600", "65a1f0c2e4b0a1b2c3d4e601"],
            "test_sample_ids": ["65a1f0c2e4b0a1b2c3d4e602"],
        }
        body.update(overrides)
        return body

    async def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Reply:
        """Send one request to `base_url + path` without following redirects."""
        headers = {**(self.headers() if auth else {}), **kwargs.pop("headers", {})}
        async with self.session.request(
            method, self.sim.base_url + path, headers=headers, allow_redirects=False, **kwargs
        ) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            return Reply(response.status, dict(response.headers), text, body)

    async def create(self, use_case: int = 0, **overrides: Any) -> Reply:
        """POST a valid model (with `overrides`)."""
        return await self.request("POST", "/models", json=self.create_body(use_case, **overrides))

    async def get(self, model_id: str) -> Reply:
        """GET one model."""
        return await self.request("GET", f"/models/{model_id}")

    async def list(self, **params: str) -> Reply:
        """GET the list, with query `params`."""
        return await self.request("GET", "/models", params=params)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session, closed after the test."""
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def make_api(session: aiohttp.ClientSession) -> Callable[..., Api]:
    """Build an `Api` for any simulator (optionally another key or session)."""

    def make(
        sim: Simulator, key: str | None = None, http: aiohttp.ClientSession | None = None
    ) -> Api:
        return Api(http or session, sim, key)

    return make


@pytest.fixture
def api(simulator: Simulator, make_api: Callable[..., Api]) -> Api:
    """An `Api` for the default `simulator` fixture."""
    return make_api(simulator)


async def wait_until(condition: Callable[[], object], *, timeout: float = 5.0) -> None:
    """Poll `condition` until it is true; fail the test if `timeout` real seconds pass first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.001)


#: Retry delays sized for a server on this machine.
FAST = hr.RetryPolicy(max_retries=4, initial_delay=0.001, max_delay=0.02, reconcile_delay=0.02)


def create_args(sim: Simulator, name: str, use_case: int = 0) -> dict[str, Any]:
    """`models.create` arguments for a model `name` cloned in the simulator's use case."""
    use_case_id = sim.use_case_ids[use_case]
    return {
        "use_case_id": use_case_id,
        "name": name,
        "from_model_id": sim.base_model_ids(use_case_id)[0],
        "train_sample_ids": [f"{name}-train"],
        "test_sample_ids": [f"{name}-test"],
    }


def models_named(sim: Simulator, name: str, use_case: int = 0) -> int:
    """How many models the simulator stored under `name` (more than one: a duplicate)."""
    key = (sim.organization_id, sim.use_case_ids[use_case], name)
    return sim.stats.models_by_name.get(key, 0)


def client_for(sim: Simulator, **options: Any) -> hr.HappyRobotClient:
    """A client of the simulator, with fast retries unless told otherwise."""
    options.setdefault("retry_policy", FAST)
    return hr.HappyRobotClient(sim.api_key, sim.base_url, **options)
