"""Hostile-server and careless-user attacks on the client: each test pins one finding
of a hostile review (all fixed) or one attack that held.

Every test runs over real HTTP: against the simulator, or against a tiny scripted
`aiohttp.web` server (`FakeAPI`, `serve`) for conditions the simulator cannot make.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from conftest import FAST, client_for, create_args, models_named, wait_until

import happyrobot_async as hr
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

SECRET = "sk-live-attack-do-not-print"
USE_CASE = "65a1f0c2e4b0a1b2c3d4e5f6"
BASE_MODEL = "65a1f0c2e4b0a1b2c3d4e5f7"
MODEL = {
    "id": "a" * 24,
    "created_at": "2024-01-01T00:00:00Z",
    "status": "active",
    "name": "m",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """Serve `handler` for every path on 127.0.0.1 (a free port); yield the API base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        await runner.cleanup()


def create_kwargs(name: str = "attack") -> dict[str, Any]:
    return {
        "use_case_id": USE_CASE,
        "name": name,
        "from_model_id": BASE_MODEL,
        "train_sample_ids": ["s1"],
        "test_sample_ids": ["s2"],
    }


def stamp(offset: float = 0.0) -> str:
    """An RFC 3339 `created_at`, whole seconds, `offset` seconds from real UTC now."""
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class FakeAPI:
    """A scripted models API: stores creates, then answers as told.

    `commit_then`: the status sent after storing a create (None: 200 with the model);
    `commit_delay`: seconds between reading a create and storing it (the server keeps
    working after the client gave up); `omit`: fields left out of every model served;
    `list_twice`: every list item twice; `get_404`: model id -> GETs answered 404 first
    (-1: always); `clock_offset`: `created_at` is real UTC + this; `date`: a `Date`
    header to send instead of aiohttp's.
    """

    commit_then: int | None = 500
    commit_delay: float = 0.0
    omit: tuple[str, ...] = ()
    list_twice: bool = False
    get_404: dict[str, int] = attrs.Factory(dict)
    clock_offset: float = 0.0
    date: str | None = None
    models: list[dict[str, Any]] = attrs.Factory(list)
    posts: int = 0

    def add(self, body: dict[str, Any], created_at: str | None = None) -> dict[str, Any]:
        model = {
            "id": f"{len(self.models) + 1:024x}",
            "created_at": created_at or stamp(self.clock_offset),
            "status": "pending",
            "name": body["name"],
            "use_case_id": body["use_case_id"],
            "from_model_id": body["from_model_id"],
            "train_sample_ids": body["train_sample_ids"],
            "test_sample_ids": body["test_sample_ids"],
        }
        self.models.append(model)
        return model

    def shown(self, model: dict[str, Any], *, listed: bool = False) -> dict[str, Any]:
        hidden = set(self.omit) | ({"train_sample_ids", "test_sample_ids"} if listed else set())
        return {k: v for k, v in model.items() if k not in hidden}

    def reply(self, body: Any, status: int = 200) -> web.Response:
        response = web.json_response(body, status=status)
        if self.date is not None:
            response.headers["Date"] = self.date
        return response

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix("/api/v1")
        if request.method == "POST" and path == "/models":
            body = await request.json()
            self.posts += 1
            if self.commit_delay:
                await asyncio.sleep(self.commit_delay)
            model = self.add(body)
            if self.commit_then is not None:
                return self.reply({"message": "upstream failed"}, self.commit_then)
            return self.reply(self.shown(model))
        if path == "/models":
            use_case = request.query.get("use_case_id")
            items = [
                self.shown(m, listed=True)
                for m in self.models
                if use_case is None or m["use_case_id"] == use_case
            ]
            return self.reply(items * 2 if self.list_twice else items)
        model_id = path.removeprefix("/models/")
        left = self.get_404.get(model_id, 0)
        found = [m for m in self.models if m["id"] == model_id]
        if not found or left:
            self.get_404[model_id] = left - 1 if left > 0 else left
            return self.reply({"message": "no such model"}, 404)
        return self.reply(self.shown(found[0]))

    def named(self, name: str) -> int:
        return sum(m["name"] == name for m in self.models)


@asynccontextmanager
async def fake_api(**settings: Any) -> AsyncIterator[tuple[FakeAPI, str]]:
    api = FakeAPI(**settings)
    async with serve(api.handle) as url:
        yield api, url


# -- 1. a date header the stdlib cannot represent escapes as OverflowError ---------------


@pytest.mark.parametrize("header", ["Date", "Retry-After"])
async def test_huge_year_in_a_date_header_is_never_an_overflow(header: str) -> None:
    """A response whose Date (or a 429's Retry-After) names year 10^20 never escapes untyped."""
    huge = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"

    async def handler(request: web.Request) -> web.Response:
        if header == "Date":
            return web.json_response(MODEL, headers={"Date": huge})
        return web.json_response({"message": "slow down"}, status=429, headers={header: huge})

    policy = attrs.evolve(FAST, max_refused_wait=0.2)  # a 429 for ever: give up soon
    async with (
        serve(handler) as url,
        hr.HappyRobotClient(SECRET, url, retry_policy=policy) as client,
    ):
        with suppress(hr.HappyRobotError):  # a typed error (or ignoring the header) is fine
            await client.models.get("a" * 24)


# -- 2. a lone surrogate in a create escapes as orjson's TypeError ----------------------


@pytest.mark.parametrize(
    ("field", "value"), [("name", "agent \ud800"), ("train_sample_ids", ["\udcff"])]
)
async def test_unencodable_create_field_is_an_invalid_request(
    simulator: Simulator, field: str, value: Any
) -> None:
    """A create field that cannot be encoded as UTF-8 is an InvalidRequestError naming it."""
    async with client_for(simulator) as client:
        with pytest.raises(hr.InvalidRequestError) as info:
            await client.models.create(**{**create_args(simulator, "x"), field: value})
    assert info.value.field.startswith(field)
    assert simulator.stats.total_requests == 0


# -- 3. per-call timeout= is never checked ---------------------------------------------


@pytest.mark.parametrize("timeout", ["5", -1, 0, float("nan"), float("inf")], ids=repr)
async def test_bad_per_call_timeout_is_refused_before_sending(
    simulator: Simulator, timeout: Any
) -> None:
    """models.get(..., timeout=bad) is an InvalidRequestError naming `timeout`; nothing is sent."""
    model_id = simulator.base_model_ids(simulator.use_case_ids[0])[0]
    async with client_for(simulator) as client:
        with pytest.raises(hr.InvalidRequestError) as info:
            await client.models.get(model_id, timeout=timeout)
    assert info.value.field == "timeout"
    assert simulator.stats.total_requests == 0


# -- 4. organization_id is never checked --------------------------------------------------


@pytest.mark.parametrize("organization_id", ["org\r\nX-Injected: 1", 123])
def test_bad_organization_id_is_refused_at_construction(organization_id: Any) -> None:
    """An organization id that cannot be a header value is refused at construction, by name."""
    with pytest.raises(hr.InvalidRequestError) as info:
        hr.HappyRobotClient(SECRET, "http://127.0.0.1:9/api/v1", organization_id=organization_id)
    assert info.value.field == "organization_id"


# -- 5. retry_policy of the wrong type fails at the first failure, as AttributeError -----


async def test_retry_policy_of_the_wrong_type_is_refused(simulator: Simulator) -> None:
    """retry_policy={...} (not a RetryPolicy) is refused at construction and in with_options."""
    with pytest.raises(hr.InvalidRequestError) as info:
        hr.HappyRobotClient(
            SECRET,
            simulator.base_url,
            retry_policy={"max_retries": 1},  # type: ignore[arg-type]
        )
    assert info.value.field == "retry_policy"
    async with client_for(simulator) as client:
        with pytest.raises(hr.InvalidRequestError):
            client.with_options(retry_policy="fast")  # type: ignore[arg-type]


# -- 6. RetryPolicy's fields are not validated ------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"max_delay": "20"},
        {"initial_delay": -1.0},
        {"max_retries": True},
        {"reconcile_delay": float("nan")},
        {"max_refused_wait": -5},
    ],
    ids=lambda f: next(iter(f)),
)
def test_nonsense_retry_policy_is_refused(fields: dict[str, Any]) -> None:
    """A RetryPolicy with a string, negative, bool or NaN field is an InvalidRequestError."""
    with pytest.raises(hr.InvalidRequestError):
        hr.RetryPolicy(**fields)


# -- 7. base_url with whitespace is accepted ---------------------------------------------


@pytest.mark.parametrize("tail", [" ", "\t"])
def test_base_url_with_trailing_whitespace_is_refused(tail: str) -> None:
    """A base URL with stray whitespace (a pasted env value) is refused like a bad key is."""
    with pytest.raises(hr.InvalidRequestError) as info:
        hr.HappyRobotClient(SECRET, "http://127.0.0.1:9/api/v1" + tail)
    assert info.value.field == "base_url"


# -- 8. a closed session surfaces as aiohttp's RuntimeError --------------------------------


async def test_requests_queued_at_close_get_a_happyrobot_error(
    simulator_factory: SimulatorFactory,
) -> None:
    """Calls waiting for a connection slot when the client closes raise a HappyRobotError."""
    sim = await simulator_factory(faults=[Fault("latency", delay=0.2)])
    client = client_for(sim, max_concurrency=1)
    tasks = [asyncio.create_task(client.models.list()) for _ in range(3)]
    await asyncio.sleep(0.05)
    await client.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, hr.HappyRobotError):
            raise result


async def test_borrowed_session_closed_by_its_owner_is_a_happyrobot_error(
    simulator: Simulator,
) -> None:
    """Using a client whose borrowed session its owner closed raises a HappyRobotError."""
    session = aiohttp.ClientSession()
    client = hr.HappyRobotClient(simulator.api_key, simulator.base_url, session=session)
    await session.close()
    with pytest.raises(hr.HappyRobotError):
        await client.models.list()


# -- 9. a compressed body bypasses max_response_bytes ------------------------------------


async def test_gzip_bomb_is_capped() -> None:
    """A 5 MB body sent gzip-compressed (~5 KB on the wire) still hits a 100 KB cap."""
    inflated = json.dumps(MODEL).encode() + b" " * 5_000_000

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(inflated),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async with (
        serve(handler) as url,
        hr.HappyRobotClient(SECRET, url, max_response_bytes=100_000, retry_policy=FAST) as client,
    ):
        with pytest.raises(hr.ResponseValidationError, match="larger than"):
            await client.models.get("a" * 24)


# -- 10. a server echoing the key puts it in our exception -------------------------------


async def test_key_echoed_by_the_server_is_not_shown() -> None:
    """A 401 whose message echoes the Authorization header does not put the key in our error."""

    async def handler(request: web.Request) -> web.Response:
        echoed = request.headers.get("authorization", "")
        return web.json_response({"message": f"invalid credentials: {echoed}"}, status=401)

    async with serve(handler) as url, hr.HappyRobotClient(SECRET, url) as client:
        with pytest.raises(hr.AuthenticationError) as info:
            await client.models.list()
    error = info.value
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert SECRET not in str(vars(error))


# -- 11. Retry-After: 0 on a 503 is a zero-delay request storm ----------------------------


async def test_zero_retry_after_on_503_does_not_storm(simulator_factory: SimulatorFactory) -> None:
    """A 503 saying Retry-After: 0 forever gets a handful of requests in 0.3 s, not hundreds."""
    sim = await simulator_factory(
        faults=[Fault("server_error", route="list", status=503, retry_after=0)]
    )
    policy = hr.RetryPolicy(max_refused_wait=0.3)
    async with hr.HappyRobotClient(sim.api_key, sim.base_url, retry_policy=policy) as client:
        with pytest.raises(hr.ServerError):
            await client.models.list()
    assert sim.stats.count("list") <= 10


# -- 12. the rate limiter never gives back the slots of cancelled calls -------------------


async def test_cancelled_calls_do_not_delay_later_ones(simulator: Simulator) -> None:
    """After 30 paced calls are cancelled unsent, the next call is paced as if they never were."""
    async with client_for(simulator, rate_limit=5.0) as client:
        tasks = [asyncio.create_task(client.models.list()) for _ in range(30)]
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sent = simulator.stats.count("list")
        assert sent <= 2
        await asyncio.sleep(0.3)  # more than one interval at 5/s: the next call is due now
        await asyncio.wait_for(client.models.list(), 1.0)  # today: ~5.5 s


# -- 13. a server clock that steps forward mid-reconcile duplicates the create ------------


async def test_server_clock_step_during_reconcile_never_duplicates(simulator: Simulator) -> None:
    """The server's clock steps 5 s forward between storing our model and listing: one model."""
    async with client_for(simulator) as client:
        await client.models.list()  # the client learns the server's clock
        simulator.faults = [
            Fault("commit_then_fail", route="create", then="drop"),
            Fault("latency", route="list", delay=0.3),
        ]

        async def step_clock() -> None:
            await wait_until(lambda: simulator.stats.count("create") >= 1)
            simulator.clock_offset = 5.0  # NTP steps the clock (or another backend answers)

        stepper = asyncio.create_task(step_clock())
        await client.models.create(**create_args(simulator, "stepped"))
        await stepper
    assert models_named(simulator, "stepped") == 1


# -- 14. no usable Date and a server clock behind by > clock_skew duplicates --------------


async def test_unreadable_date_and_slow_server_clock_never_duplicate() -> None:
    """A server with no readable Date, its clock a minute behind: a commit-then-fail is adopted."""
    async with (
        fake_api(date="not a date", clock_offset=-60.0) as (api, url),
        hr.HappyRobotClient(SECRET, url, retry_policy=FAST) as client,
    ):
        with suppress(hr.AmbiguousCreateError):  # an honest "don't know" is fine
            await client.models.create(**create_kwargs("late"))
    assert api.named("late") == 1, f"{api.posts} POSTs stored {api.named('late')} models"


# -- 15. a server that commits after the client timed out gets the create twice ------------


async def test_create_committed_after_the_timeout_is_not_resent() -> None:
    """The server stores a create 0.35 s after reading it; the client quit at 0.2 s: one model."""
    async with fake_api(commit_then=None, commit_delay=0.35) as (api, url):
        async with hr.HappyRobotClient(SECRET, url, timeout=0.2, retry_policy=FAST) as client:
            with suppress(hr.AmbiguousCreateError):
                await client.models.create(**create_kwargs("slow"))
        await asyncio.sleep(0.6)  # let the server finish what it was still doing
    assert api.named("slow") == 1, f"{api.posts} POSTs stored {api.named('slow')} models"


# -- 16. an identical create a moment earlier is adopted instead of ours -------------------


async def test_identical_create_does_not_adopt_the_previous_model(simulator: Simulator) -> None:
    """Two identical creates in a row, the second commit-then-fail: it returns its own model."""
    async with client_for(simulator) as client:
        first = await client.models.create(**create_args(simulator, "twin"))
        simulator.faults = [Fault("commit_then_fail", route="create", then=500)]
        second = await client.models.create(**create_args(simulator, "twin"))
    assert models_named(simulator, "twin") == 2
    assert second.id != first.id  # today: the first again; the second model is orphaned


# -- 17. a list repeating an item makes one partial candidate "several" --------------------


async def test_duplicate_list_items_are_one_candidate() -> None:
    """A list that repeats our model (omitted fields) still settles the create on it."""
    omitted = ("from_model_id", "train_sample_ids", "test_sample_ids")
    async with (
        fake_api(omit=omitted, list_twice=True) as (api, url),
        hr.HappyRobotClient(SECRET, url, retry_policy=FAST) as client,
    ):
        model = await client.models.create(**create_kwargs("listed-twice"))
    assert api.named("listed-twice") == 1
    assert model.id == api.models[0]["id"]


# -- 18. with_raw_response after a reconcile returns another request's response -----------


async def test_raw_response_of_a_reconciled_create_is_the_finding_get() -> None:
    """A partial candidate beside a listed one that 404s: ambiguous (finding 19's rule), so
    no raw response of another request can be handed out as this create's."""
    omitted = ("from_model_id", "train_sample_ids", "test_sample_ids")
    async with fake_api(omit=omitted) as (api, url):
        ghost = api.add({**create_kwargs("raw-twin"), "train_sample_ids": ["other"]}, stamp(5.0))
        api.get_404[ghost["id"]] = -1  # listed, but deleted by the time we GET it
        async with hr.HappyRobotClient(SECRET, url, retry_policy=FAST) as client:
            with pytest.raises(hr.AmbiguousCreateError):
                await client.models.with_raw_response.create(**create_kwargs("raw-twin"))
    assert api.named("raw-twin") == 2  # the ghost and ours: nothing resent


# -- 19. a listed candidate whose GET 404s for a moment is dropped and the create resent --


async def test_listed_candidate_with_lagging_get_is_not_resent() -> None:
    """Our model is listed but its GET 404s twice (replica lag): never a second model."""
    async with fake_api() as (api, url):
        api.get_404[f"{1:024x}"] = 2
        async with hr.HappyRobotClient(SECRET, url, retry_policy=FAST) as client:
            with suppress(hr.AmbiguousCreateError):
                await client.models.create(**create_kwargs("lagging"))
    assert api.named("lagging") == 1, f"{api.posts} POSTs stored {api.named('lagging')} models"


# -- held: cheap pins of what survived ------------------------------------------------------


async def test_held_odd_statuses_are_typed() -> None:
    """201 is a success; 204/empty 200 are ResponseValidationError; 302/418/599 APIStatusError."""
    cases: dict[int, type[BaseException] | None] = {
        201: None,
        204: hr.ResponseValidationError,
        302: hr.APIStatusError,
        418: hr.APIStatusError,
        599: hr.ServerError,
    }
    for status, expected in cases.items():

        async def handler(request: web.Request, status: int = status) -> web.Response:
            if status == 201:
                return web.json_response(MODEL, status=201)
            return web.Response(status=status)

        async with serve(handler) as url, hr.HappyRobotClient(SECRET, url, max_retries=0) as client:
            if expected is None:
                assert (await client.models.get("a" * 24)).id == "a" * 24
            else:
                with pytest.raises(expected):
                    await client.models.get("a" * 24)


async def test_held_hang_mid_body_times_out() -> None:
    """Headers then a stalled body (Content-Length or chunked) end in APITimeoutError on time."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if request.path.endswith("/models"):  # the list: chunked; a get: Content-Length
            response.enable_chunked_encoding()
        else:
            response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"id":')
        await asyncio.sleep(5)
        return response

    async with (
        serve(handler) as url,
        hr.HappyRobotClient(SECRET, url, timeout=0.2, max_retries=0) as client,
    ):
        started = time.perf_counter()
        with pytest.raises(hr.APITimeoutError):
            await client.models.get("a" * 24)
        with pytest.raises(hr.APITimeoutError):
            await client.models.list()
        assert time.perf_counter() - started < 1.5


def test_held_retry_after_parsing() -> None:
    """Garbage retry-after-ms falls back to Retry-After; NaN or negative waits are never below 0."""
    from happyrobot_async._wire import retry_after_seconds

    now = datetime.now(UTC)
    assert retry_after_seconds({"retry-after-ms": "abc", "retry-after": "2"}, now) == 2.0
    assert retry_after_seconds({"retry-after-ms": "nan"}, now) == 0.0
    assert retry_after_seconds({"retry-after": "-3"}, now) == 0.0
    assert retry_after_seconds({"retry-after": "1e999"}, now) == math.inf
    assert retry_after_seconds({"retry-after": "soon"}, now) is None
