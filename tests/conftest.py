"""Shared fixtures: the simulator plugin, an HTTP session, a tiny API caller, and CLI helpers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import attrs
import pytest

import happyrobot_async as hr
from happyrobot_async import cli
from happyrobot_async.testing import Simulator, SimulatorStats

if TYPE_CHECKING:  # a real import would load the plugin before pytest_plugins does
    from happyrobot_async.testing.pytest_plugin import SimulatorFactory

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


# -- the command line: shared by tests/test_cli*.py -----------------------------------------

#: `await run(*argv)`: the command's exit code, stdout and stderr.
Run = Callable[..., Awaitable[tuple[int, str, str]]]

#: Sample ids a job may train and test on.
SAMPLES = {"train_sample_ids": ["a" * 24, "b" * 24], "test_sample_ids": ["c" * 24]}


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `cli.main` in a thread (the simulator's loop keeps serving); exit code, out, err."""

    async def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


class CliSimulator(Protocol):
    """`await cli_simulator(**settings)`: a simulator the commands find by the environment."""

    async def __call__(self, *, url_in_env: bool = True, **settings: Any) -> Simulator: ...


@pytest.fixture
def cli_simulator(
    simulator_factory: SimulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> CliSimulator:
    """Start a simulator (`simulator_factory`'s settings) the commands find by the environment.

    Its key is in HAPPYROBOT_API_KEY and its URL in HAPPYROBOT_BASE_URL (with
    `url_in_env=False` it is not: the command line must pass --base-url); no
    HAPPYROBOT_ORGANIZATION_ID is set, so requests go as the key's own organization.
    """

    async def start(*, url_in_env: bool = True, **settings: Any) -> Simulator:
        simulator = await simulator_factory(**settings)
        monkeypatch.setenv("HAPPYROBOT_API_KEY", simulator.api_key)
        if url_in_env:
            monkeypatch.setenv("HAPPYROBOT_BASE_URL", simulator.base_url)
        monkeypatch.delenv("HAPPYROBOT_ORGANIZATION_ID", raising=False)
        return simulator

    return start


@pytest.fixture
async def sim(cli_simulator: CliSimulator) -> Simulator:
    """A fast simulator with no failures, its key and URL in the environment."""
    return await cli_simulator(seed=3, speed=100.0, failure_rate=0.0)


def create_argv(sim: Simulator, name: str = "Carrier sales v2") -> list[str]:
    """The arguments of a valid `create` in the simulator's first use case."""
    use_case = sim.use_case_ids[0]
    return [
        "create",
        *("--use-case-id", use_case, "--name", name),
        *("--from-model-id", sim.base_model_ids(use_case)[0]),
        *("--train-sample-id", "a" * 24, "--train-sample-id", "b" * 24),
        *("--test-sample-id", "c" * 24),
    ]


def make_jobs(sim: Simulator, count: int, prefix: str = "job") -> list[dict[str, Any]]:
    """`count` valid job objects spread over the simulator's use cases, keyed k0, k1, …"""
    jobs = []
    for number in range(count):
        use_case = sim.use_case_ids[number % len(sim.use_case_ids)]
        jobs.append(
            {
                "use_case_id": use_case,
                "name": f"{prefix}-{number}",
                "from_model_id": sim.base_model_ids(use_case)[0],
                **SAMPLES,
                "key": f"k{number}",
            }
        )
    return jobs


def write_jobs(path: Path, jobs: list[dict[str, Any]]) -> Path:
    """Write jobs as JSONL."""
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs), encoding="utf-8")
    return path


async def cli_process(sim: Simulator, *argv: str) -> asyncio.subprocess.Process:
    """Start `python -m happyrobot_async *argv --base-url <sim>` with the simulator's key.

    The child's stdout and stderr are pipes, so a test can read its output and signal it.
    """
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "happyrobot_async", *argv, "--base-url", sim.base_url),
        env={**os.environ, "HAPPYROBOT_API_KEY": sim.api_key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


# -- the watcher's tests: simulators, clients and models ----------------------------------

Connect = Callable[..., Awaitable[tuple[Simulator, hr.HappyRobotClient]]]
"""`connect(*, client_options=None, **settings)`: a new simulator and a client on it."""


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    """An exit stack for what a test opens (clients, servers), closed after the test."""
    async with AsyncExitStack() as stack:
        yield stack


def connector(
    simulator_factory: SimulatorFactory, stack: AsyncExitStack, **defaults: Any
) -> Connect:
    """A `Connect` starting simulators with `defaults` (unless told otherwise), each with a
    client on it; both are closed after the test."""

    async def connect(
        *, client_options: dict[str, Any] | None = None, **settings: Any
    ) -> tuple[Simulator, hr.HappyRobotClient]:
        sim = await simulator_factory(**{**defaults, **settings})
        client = hr.HappyRobotClient(sim.api_key, sim.base_url, **(client_options or {}))
        await stack.enter_async_context(client)
        return sim, client

    return connect


@pytest.fixture
def still_connect(simulator_factory: SimulatorFactory, stack: AsyncExitStack) -> Connect:
    """A `Connect` whose simulators move nothing unless told (speed 0, no failures)."""
    return connector(simulator_factory, stack, speed=0.0, failure_rate=0.0)


@pytest.fixture
async def no_leftover_tasks() -> AsyncIterator[None]:
    """End whatever watcher task a test left behind, so one test never spoils the next."""
    yield
    leftovers = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and task.get_name().startswith("happyrobot_async")
    ]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


async def create_models(
    sim: Simulator, client: hr.HappyRobotClient, count: int = 1, use_cases: int = 1
) -> list[hr.Model]:
    """Create `count` models (`model 0`, ...) spread over the first `use_cases` use cases."""

    async def one(i: int) -> hr.Model:
        use_case_id = sim.use_case_ids[i % use_cases]
        return await client.models.create(
            use_case_id=use_case_id,
            name=f"model {i}",
            from_model_id=sim.base_model_ids(use_case_id)[0],
            train_sample_ids=["s1", "s2"],
            test_sample_ids=["s3"],
        )

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@contextmanager
def loop_in_a_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """A second event loop, running in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextmanager
def simulator_in_a_thread(
    **settings: Any,
) -> Iterator[tuple[Simulator, Callable[[], SimulatorStats]]]:
    """Run a simulator on its own loop in a thread, so this loop holds only our tasks.

    Also gives a way to read its stats safely: on its own loop, the counters' only writer.
    """
    with loop_in_a_thread() as loop:
        sim = Simulator(**settings)
        asyncio.run_coroutine_threadsafe(sim.start(), loop).result(5)

        async def snapshot() -> SimulatorStats:
            return sim.stats

        async def drain() -> None:  # handlers the server's shutdown left behind: end them here
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        def stats() -> SimulatorStats:
            return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(5)

        try:
            yield sim, stats
        finally:
            asyncio.run_coroutine_threadsafe(sim.close(), loop).result(5)
            asyncio.run_coroutine_threadsafe(drain(), loop).result(5)
