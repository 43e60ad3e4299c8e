"""Hostile-server and careless-user attacks on the request hot path.

The one-step `Model` hook, the `Gate` in front of every request, URLs built
pre-encoded, the cookie-less session, the sample-id fast path, the idle rate
limiter and the batch's early release of its create slot. Each test pins one
attack: one that broke them until fixed, or one that held.

Every test talks HTTP to the real simulator, directly or through `relay`, a
tiny aiohttp proxy in front of it that adds `Set-Cookie` headers to every answer
and notes what the client really put on the wire (raw path, query, cookies).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import cattrs
import pytest
import yarl
from aiohttp import web
from conftest import FAST, CliSimulator, Run, create_args, make_jobs, models_named, wait_until
from conftest import write_jobs as write_jobs_file

import happyrobot_async as hr
from happyrobot_async._ratelimit import AdaptiveRateLimiter
from happyrobot_async._serde import _structure_model_checked
from happyrobot_async.testing import Fault, Simulator
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

ROOT = Path(__file__).resolve().parent.parent

# -- the relay: a proxy in front of the simulator --------------------------------------------

#: Cookies a hostile server sets on every answer: plain, domain-wide, absurd dates, broken.
HOSTILE_COOKIES = [
    "session=abc123; Path=/; HttpOnly",
    "wide=1; Domain=localhost; Path=/",
    "forever=1; Expires=Mon, 01 Jan 99999999999 00:00:00 GMT",
    "past=1; Max-Age=-1",
    'broken="unterminated; Path=/',
    "=nameless",
    ";;;",
    "big=" + "x" * 8000,
    "utf=caf\u00e9",
]
_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@attrs.define
class Seen:
    """One request as it reached the relay: its raw (encoded) path, query and cookies."""

    raw_path: str
    query: dict[str, str]
    cookies: list[str]


@asynccontextmanager
async def relay(sim: Simulator) -> AsyncIterator[tuple[int, list[Seen]]]:
    """Forward every request to `sim` unchanged; add `HOSTILE_COOKIES`; note what came in.

    Yields the relay's port (on 127.0.0.1) and the list of `Seen` requests.
    """
    seen: list[Seen] = []
    upstream = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)

    async def forward(request: web.Request) -> web.Response:
        seen.append(
            Seen(request.raw_path, dict(request.query), request.headers.getall("Cookie", []))
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {*_HOP, "cookie"}}
        async with upstream.request(
            request.method,
            yarl.URL(sim.origin + request.raw_path, encoded=True),
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        response = web.Response(status=answer.status, body=body, headers=kept)
        for cookie in HOSTILE_COOKIES:
            response.headers.add("Set-Cookie", cookie)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()
        await upstream.close()


def base_model(sim: Simulator) -> str:
    """A model id the simulator knows (a seeded base model)."""
    return sim.base_model_ids(sim.use_case_ids[0])[0]


# -- 1. the one-step Model hook: the same answers as cattrs' checked path, over HTTP ----------

MISSING: Any = object()
"""In `ODD_ITEMS`: the key is left out."""

#: Odd but well-formed JSON a hostile server may send for a model: each key changed alone.
ODD_ITEMS: dict[str, dict[str, Any]] = {
    "int for a bool": {"trainable": 1},
    "zero for a bool": {"use_backup_when_idle": 0},
    "float for a bool": {"explain_tools": 1.0},
    "bool for a string": {"provider": True},
    "int for the name": {"name": 7},
    "nested id lists": {"train_sample_ids": [["a"], ["b"]]},
    "a null id": {"test_sample_ids": ["a", None]},
    "a huge id list": {"train_sample_ids": [f"{n:024x}" for n in range(20_000)]},
    "enum name as status": {"status": "ACTIVE"},
    "capitalised status": {"status": "Active"},
    "the unknown status": {"status": "unknown"},
    "raw_status key sent too": {"raw_status": "failed", "status": "training"},
    "ISO week date": {"created_at": "2024-W18-3"},
    "compact basic date": {"created_at": "20240501T120000"},
    "date only": {"created_at": "2024-05-01"},
    "comma fraction": {"created_at": "2024-05-01T12:00:00,5+01:00"},
    "leap second, lower case": {"created_at": "2016-12-31t23:59:60z"},
    "far offset": {"created_at": "9999-12-31T23:59:59-23:59"},
    "created_at missing": {"created_at": MISSING},
    "status missing": {"status": MISSING},
    "null created_at": {"created_at": None},
    "null trainable": {"trainable": None},
}


def _full(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "created_at": "2024-05-01T12:00:00.123456Z",
        "status": "training",
        "name": "odd",
        "organization_id": None,
        "description": "d",
        "from_model_id": "65a1f0c2e4b0a1b2c3d4e003",
        "train_sample_ids": ["65a1f0c2e4b0a1b2c3d4e004"],
        "test_sample_ids": ["65a1f0c2e4b0a1b2c3d4e006"],
        "trainable": True,
        "use_backup_for_generations": False,
        "use_backup_when_idle": False,
        "provider": "openai",
        "explain_tools": None,
        "compressed": False,
        "compressed_version": None,
    }


async def test_odd_models_over_http_decode_as_the_checked_path_does(simulator: Simulator) -> None:
    """Every odd spelling served by GET and in the list: the client's `Model` is exactly
    what cattrs' checked path builds, and what it refuses the client refuses too."""
    use_case_id = simulator.use_case_ids[1]
    items = {}
    for number, (label, change) in enumerate(ODD_ITEMS.items()):
        item = {**_full(f"{number:024d}"), **change}
        items[label] = {key: value for key, value in item.items() if value is not MISSING}
        simulator.add_raw_item(use_case_id, items[label])
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        listed = {m.id: m for m in await client.models.list(use_case_id=use_case_id)}
        for label, item in items.items():
            try:
                expected: hr.Model | None = _structure_model_checked(item, hr.Model)
            except (cattrs.BaseValidationError, TypeError, ValueError):
                expected = None
            if expected is None:
                with pytest.raises(hr.ResponseValidationError):
                    await client.models.get(item["id"])
                assert item["id"] not in listed, label
            else:
                got = await client.models.get(item["id"])
                assert got == expected, label
                assert got.created_at.utcoffset() == expected.created_at.utcoffset(), label
                assert listed[item["id"]] == expected, label
        hostile = await client.models.get(items["raw_status key sent too"]["id"])
        assert hostile.raw_status == "training"  # a "raw_status" key never overrides "status"


async def test_sample_ids_sent_as_a_string_or_object_are_refused(simulator: Simulator) -> None:
    """`"train_sample_ids": "abc"` (or an object) is not a list of ids: a
    ResponseValidationError naming the field, never `('a', 'b', 'c')`."""
    use_case_id = simulator.use_case_ids[1]
    as_string = {**_full("s" * 24), "train_sample_ids": "abc"}
    as_object = {**_full("o" * 24), "test_sample_ids": {"x": 1}}
    simulator.add_raw_item(use_case_id, as_string)
    simulator.add_raw_item(use_case_id, as_object)
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        for item, field in ((as_string, "train_sample_ids"), (as_object, "test_sample_ids")):
            with pytest.raises(hr.ResponseValidationError) as info:
                await client.models.get(item["id"])
            assert field in info.value.path


# -- 2. the gate: mass cancellation, timeouts, close ----------------------------------------


async def test_a_cancellation_storm_leaves_exactly_max_concurrency_places(
    simulator_factory: SimulatorFactory,
) -> None:
    """1,500 calls ended by wait_for, asyncio.timeout, task.cancel and per-call timeouts at
    random moments (waiting, just handed a place, in flight): afterwards the gate has
    exactly `max_concurrency` places, no fewer (a leak) and no more. Measured with a
    borrowed session whose connector has no limit, so the gate alone caps requests."""
    sim = await simulator_factory(faults=[Fault("latency", delay=0.02, route="get")])
    model_id, rng = base_model(sim), random.Random(7)
    policy = hr.RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.01)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        hr.HappyRobotClient(
            sim.api_key, sim.base_url, max_concurrency=3, session=session, retry_policy=policy
        ) as client,
    ):

        async def one(number: int) -> str:
            after = rng.uniform(0.0, 0.12)
            try:
                if number % 4 == 0:
                    await asyncio.wait_for(client.models.get(model_id), after)
                elif number % 4 == 1:
                    async with asyncio.timeout(after):
                        await client.models.get(model_id)
                elif number % 4 == 2:
                    await client.models.get(model_id, timeout=max(0.001, after / 4))
                else:
                    task = asyncio.ensure_future(client.models.get(model_id))
                    asyncio.get_running_loop().call_later(after, task.cancel)
                    await task
            except (TimeoutError, asyncio.CancelledError, hr.APITimeoutError):
                return "ended"
            return "ok"

        outcomes = await asyncio.gather(*(one(n) for n in range(1500)))
        assert set(outcomes) <= {"ok", "ended"} and "ended" in outcomes
        await wait_until(lambda: sim.stats.in_flight == 0)  # abandoned handlers finish
        sim.reset_stats()
        sim.faults = [Fault("latency", delay=0.05, route="get")]
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client.models.get(model_id) for _ in range(24))), 5)
        assert sim.stats.max_in_flight == 3
        assert sim.stats.count("get", 200) == 24
        assert time.perf_counter() - started >= 8 * 0.05 * 0.9  # 24 calls, 3 at a time


async def test_waiters_timed_out_behind_hung_requests_send_nothing_and_close_frees_all(
    simulator_factory: SimulatorFactory,
) -> None:
    """Both places held by hung requests: 1,000 calls time out at the gate and never reach
    the server later; 200 more wait; close() then ends every call promptly, each with a
    HappyRobotError, and none of them sent anything."""
    hung = "h" * 24
    sim = await simulator_factory(faults=[Fault("hang", route="get", model_id=hung)])
    model_id = base_model(sim)
    client = hr.HappyRobotClient(
        sim.api_key, sim.base_url, max_concurrency=2, retry_policy=hr.RetryPolicy(max_retries=0)
    )
    holders = [asyncio.create_task(client.models.get(hung, timeout=30)) for _ in range(2)]
    await wait_until(lambda: sim.stats.in_flight == 2)
    for _ in range(1000):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.models.get(model_id), 0.0005)
    waiting = [asyncio.create_task(client.models.get(model_id)) for _ in range(200)]
    await asyncio.sleep(0.05)
    assert sim.stats.total_requests == 0 and sim.stats.in_flight == 2  # nothing new was sent
    started = time.perf_counter()
    await client.close()
    results = await asyncio.wait_for(asyncio.gather(*holders, *waiting, return_exceptions=True), 3)
    assert time.perf_counter() - started < 3
    assert all(isinstance(result, hr.HappyRobotError) for result in results), {
        type(result).__name__ for result in results
    }
    await wait_until(lambda: sim.stats.in_flight == 0)
    assert sim.stats.count("get") == 2  # the two hung ones, nothing else


@pytest.mark.parametrize("closer", ["client", "owner"])
async def test_calls_paced_by_the_rate_limiter_when_the_client_closes_raise_happyrobot_errors(
    simulator: Simulator, closer: str
) -> None:
    """Calls waiting for their rate-limit slot when the client closes (or the owner closes the
    borrowed session) end as HappyRobotErrors, never as aiohttp's bare RuntimeError."""
    session = aiohttp.ClientSession() if closer == "owner" else None
    client = hr.HappyRobotClient(
        simulator.api_key, simulator.base_url, rate_limit=20.0, session=session
    )
    calls = [asyncio.create_task(client.models.get(base_model(simulator))) for _ in range(4)]
    await asyncio.sleep(0.01)  # the first went out; the others are paced 50, 100, 150 ms on
    await (session.close() if session is not None else client.close())
    await client.close()
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if not isinstance(r, hr.Model)]
    assert len(errors) >= 3
    assert all(isinstance(r, hr.HappyRobotError) for r in errors), [repr(r) for r in errors]


async def test_close_ends_calls_waiting_for_their_rate_limit_slot_at_once(
    simulator: Simulator,
) -> None:
    """Five calls queued behind rate_limit=2: after close() every one of them has ended
    within half a second (it will never be sent; waiting out its slot serves nobody)."""
    client = hr.HappyRobotClient(simulator.api_key, simulator.base_url, rate_limit=2.0)
    calls = [asyncio.create_task(client.models.get(base_model(simulator))) for _ in range(5)]
    await asyncio.sleep(0.01)
    await client.close()
    try:
        _, pending = await asyncio.wait(calls, timeout=0.5)
        assert not pending, f"{len(pending)} call(s) still waiting 0.5 s after close()"
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)


# -- 3. URLs built pre-encoded ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "{origin}/api/v1/",
        "{origin}/api/v1///",
        "{origin}/api/./v1",
        "{origin}/api/%76%31",
        "{origin}/api/v1?",
        "{origin}/api/v1#",
        "HTTP://127.0.0.1:{port}/api/v1",
        "http://localhost:{port}/api/v1",
    ],
)
async def test_odd_but_valid_base_urls_reach_the_api(
    simulator_factory: SimulatorFactory, spelling: str
) -> None:
    """Trailing slashes, dot segments, percent-encoded unreserved characters, an empty
    query or fragment, an upper-case scheme, a host name: each reaches /api/v1/models."""
    sim = await simulator_factory()
    base = spelling.format(origin=sim.origin, port=sim.port)
    async with hr.HappyRobotClient(sim.api_key, base) as client:
        assert len(await client.models.list()) == len(sim.models)
    assert [entry.path for entry in sim.stats.log] == ["/api/v1/models"]


async def test_an_ipv6_loopback_base_url_reaches_the_api(
    simulator_factory: SimulatorFactory,
) -> None:
    """`http://[::1]:port/api/v1` (and its long spelling) is a loopback URL that works."""
    sim = await simulator_factory(host="::1")
    for host in ("[::1]", "[0:0:0:0:0:0:0:1]"):
        async with hr.HappyRobotClient(sim.api_key, f"http://{host}:{sim.port}/api/v1") as client:
            assert await client.models.get(base_model(sim))
    assert sim.stats.count("get", 200) == 2


@pytest.mark.parametrize("tail", ["/.", "/./", "/x/..", "/x/../", "/%2E"])
async def test_base_url_ending_in_a_dot_segment_reaches_the_api(
    simulator_factory: SimulatorFactory, tail: str
) -> None:
    """`.../api/v1/.` and `.../api/v1/x/..` name `.../api/v1/`: the list is found there."""
    sim = await simulator_factory()
    async with hr.HappyRobotClient(sim.api_key, sim.base_url + tail) as client:
        assert len(await client.models.list()) == len(sim.models)


async def test_what_goes_on_the_wire_is_encoded_once(simulator: Simulator) -> None:
    """A base path with a space and non-ASCII goes out percent-encoded (not refused, not
    raw); ids at the limits of `[A-Za-z0-9._~-]` go out verbatim; a list filter full of
    reserved characters reaches the server exactly as given."""
    odd_ids = ["abc.def~ghi-jkl_mno.pq~r", "." * 24, "~" * 24, "-" * 24, "_" * 24]
    use_case = "a&b=c#d %41 \u00fc/?x+y"
    async with relay(simulator) as (port, seen):
        base = f"http://127.0.0.1:{port}/api v1/\u00e9"
        async with hr.HappyRobotClient(simulator.api_key, base) as client:
            with pytest.raises(hr.NotFoundError, match="is the base URL right"):
                await client.models.list()
        assert [s.raw_path for s in seen] == ["/api%20v1/%C3%A9/models"]
        seen.clear()
        async with hr.HappyRobotClient(simulator.api_key, f"http://127.0.0.1:{port}/api/v1") as c:
            for model_id in odd_ids:
                with pytest.raises(hr.NotFoundError):
                    await c.models.get(model_id)
            assert await c.models.list(use_case_id=use_case) == []
    assert [s.raw_path for s in seen[:-1]] == [f"/api/v1/models/{i}" for i in odd_ids]
    assert seen[-1].query == {"use_case_id": use_case}


# -- 4. cookies ----------------------------------------------------------------------------


async def test_cookies_set_by_the_server_are_never_sent_back(simulator: Simulator) -> None:
    """Every answer sets hostile cookies (domain-wide, year 10^11, unterminated, 8 KB) on a
    host name a cookie jar would accept: creates, gets, lists and a wait all work, and
    no request ever carries a Cookie header."""
    async with relay(simulator) as (port, seen):
        base = f"http://localhost:{port}/api/v1"
        async with hr.HappyRobotClient(simulator.api_key, base, retry_policy=FAST) as client:
            model = await client.models.create(**create_args(simulator, "cookie monster"))
            for _ in range(3):
                assert (await client.models.get(model.id)).id == model.id
                assert model.id in {m.id for m in await client.models.list()}
            simulator.clock.advance(3600)
            assert (await client.models.wait(model.id, poll_interval=0.01)).status.is_terminal
    assert len(seen) >= 8
    assert all(s.cookies == [] for s in seen), [s.cookies for s in seen if s.cookies]


# -- 5. sample ids: the fast path still names the bad item, before any request ----------------

#: (train_sample_ids, test_sample_ids, the field named)
BAD_IDS = [
    (["ok", "   "], ["ok"], "train_sample_ids[1]"),
    (["ok", ""], ["ok"], "train_sample_ids[1]"),
    (["ok"], ["\u3000\u2003\t"], "test_sample_ids[0]"),
    (["\ud83d", "\ude00"], ["ok"], "train_sample_ids[0]"),  # a pair split across two ids
    (["ok", "a\udfff"], ["ok"], "train_sample_ids[1]"),
    (["ok", 7], ["ok"], "train_sample_ids[1]"),
    (["ok"], ["ok", None], "test_sample_ids[1]"),
    (["ok", b"bytes"], ["ok"], "train_sample_ids[1]"),
    (["ok", " ", 7], ["ok"], "train_sample_ids[1]"),
    (["ok", "\ud800", ""], ["ok"], "train_sample_ids[1]"),
    ([*(f"{n:024x}" for n in range(50_000)), " "], ["ok"], "train_sample_ids[50000]"),
]


@pytest.mark.parametrize(("train", "test", "field"), BAD_IDS)
async def test_a_bad_sample_id_is_named_by_index_before_any_request(
    simulator: Simulator, train: list[Any], test: list[Any], field: str
) -> None:
    """Whitespace-only, empty, lone-surrogate and non-string ids: InvalidRequestError naming
    the field and the index of the first bad id, for `create` and for a batch job; nothing
    is sent."""
    args = {**create_args(simulator, "ids"), "train_sample_ids": train, "test_sample_ids": test}
    async with hr.HappyRobotClient(simulator.api_key, simulator.base_url) as client:
        with pytest.raises(hr.InvalidRequestError) as info:
            await client.models.create(**args)
    assert info.value.field == field
    with pytest.raises(hr.InvalidRequestError) as info:
        hr.TrainingJob(**args)
    assert info.value.field == field
    assert simulator.stats.total_requests == 0


# -- 6. the rate limiter ------------------------------------------------------------------


async def _storm(sim: Simulator, client: hr.HappyRobotClient, calls: int) -> int:
    """Turn on a 40 req/s limit (burst 10), make `calls` concurrent gets; the 429s it took."""
    sim.set_rate_limit(40, 10)
    sim.reset_stats()
    model_id = base_model(sim)
    await asyncio.wait_for(asyncio.gather(*(client.models.get(model_id) for _ in range(calls))), 20)
    assert sim.stats.count("get", 200) == calls
    return sim.stats.count("get", 429)


STORM_POLICY = hr.RetryPolicy(max_retries=30, initial_delay=0.01, max_delay=1.0)


async def test_a_429_storm_right_after_engaging_is_paced(
    simulator_factory: SimulatorFactory,
) -> None:
    """60 calls burst into a 40 req/s server: the limiter engages on the first 429s and
    every call succeeds, at fewer 429s than calls."""
    sim = await simulator_factory()
    async with hr.HappyRobotClient(sim.api_key, sim.base_url, retry_policy=STORM_POLICY) as client:
        assert await _storm(sim, client, 60) < 90


async def test_a_burst_before_an_idle_second_does_not_inflate_the_engaged_rate(
    simulator_factory: SimulatorFactory,
) -> None:
    """300 quick calls, 1.2 s idle, then the same 429 storm: no more 429s than a fresh
    client takes (the earlier burst is not in the last second)."""
    sim = await simulator_factory()
    async with hr.HappyRobotClient(sim.api_key, sim.base_url, retry_policy=STORM_POLICY) as client:
        model_id = base_model(sim)
        started = time.perf_counter()
        await asyncio.gather(*(client.models.get(model_id) for _ in range(300)))
        assert time.perf_counter() - started < 0.8, "the burst must fit in one second"
        await asyncio.sleep(1.2)
        assert await _storm(sim, client, 60) < 100  # a fresh client: ~50


def test_requests_outside_the_last_second_do_not_count_at_engagement() -> None:
    """1,000 requests at t=0-0.1 s, 20 at t=1.5 s, a 429 at 1.52 s: 20 requests were sent
    in the last second, so the limiter engages at about 10 req/s (ceiling about 40)."""
    limiter = AdaptiveRateLimiter()
    for number in range(1000):
        limiter.reserve(number * 0.0001)
    for number in range(20):
        limiter.reserve(1.5 + number * 0.001)
    limiter.on_throttled(1.52)
    assert limiter.max_rate is not None and limiter.max_rate <= 50


# -- 7. the batch: a crash between the POST and its 'created' record reaching the disk -------

#: Run `batch` with a journal whose disk stalls on the first `created` record: it touches
#: the marker file (argv[1]) and hangs there, as a crash would leave it: POSTed, unrecorded.
STALLING_BATCH = """
import sys, time
from pathlib import Path
from happyrobot_async import _journal_writer
marker, write = Path(sys.argv[1]), _journal_writer.Appender._write
def stalling(self, items, *, sync):
    if any(b'"type":"created"' in line for line, _ in items):
        marker.write_text("stalled")
        time.sleep(3600)
    return write(self, items, sync=sync)
_journal_writer.Appender._write = stalling
from happyrobot_async.cli import main
sys.exit(main(sys.argv[2:]))
"""


async def test_a_batch_killed_before_its_created_records_reach_disk_never_creates_twice(
    cli_simulator: CliSimulator, run: Run, tmp_path: Path
) -> None:
    """SIGKILL while the first `created` record waits for the disk (its model stored, the
    create slot already given back): the rerun finds every stored model instead of
    creating it again, and finishes every job with exactly one model."""
    sim = await cli_simulator(seed=5, speed=100.0, failure_rate=0.0)
    sim.faults = [Fault("latency", delay=0.05, route="create")]  # creates overlap
    jobs = make_jobs(sim, 4, prefix="crash")
    path, journal = write_jobs_file(tmp_path / "jobs.jsonl", jobs), tmp_path / "j"
    argv = ["batch", str(path), "--journal", str(journal), "--poll-interval", "0.02"]
    marker = tmp_path / "stalled"
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", STALLING_BATCH, str(marker), *argv, "--concurrency", "4"),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_until(marker.exists, timeout=30)
        await asyncio.sleep(0.2)  # let the other creates land too
    finally:
        child.kill()
        await child.wait()
    stored = sim.stats.models_created
    assert stored >= 1
    assert b'"created"' not in journal.read_bytes()  # the crash left intents only
    code, _, err = await run(*argv)
    assert code == 0, err
    assert sim.stats.models_created == len(jobs) and sim.stats.duplicates == 0
    assert all(models_named(sim, job["name"], n % 3) == 1 for n, job in enumerate(jobs))
