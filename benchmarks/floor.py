"""Floor: how much of a request's client CPU is aiohttp's, and how much is the SDK's.

Issue 13's first target asks the SDK for at most 1.08x the client CPU per
request of raw aiohttp + `json.loads`. This splits that floor, in the
measurement of section 1 (one fresh simulator per block, the variants taking
turns chunk by chunk, paired per repetition), at concurrency 64:

- **raw aiohttp**: section 1's floor, aiohttp as written by default (a cookie
  jar, its 5-minute total timeout, URLs given as strings).
- **aiohttp, the SDK's settings**: the same session with what the SDK's own
  session uses: no cookie jar, no aiohttp total timeout (the SDK keeps its own
  deadline), URLs taken as already encoded, no redirects.
- **bare HTTP/1.1**: a keep-alive exchange written straight on an asyncio
  `Protocol` (request line and headers out; status, `Content-Length` and body
  in; anything else is an error) + `json.loads`: what the exchange itself
  costs in pure Python on asyncio's own loop. Not a client: no chunked
  bodies, TLS, timeouts, limits or error mapping.
- **happyrobot_async**: `client.models.get` / `create`, as in section 1 (the
  core alone: `run.py` runs this with `HAPPYROBOT_NO_SPEEDUPS=1`).

Figures: client CPU µs per request, and per repetition the differences that
name the parts: aiohttp's default total timeout (raw minus the SDK's settings;
of those settings only the timeout measures above noise), aiohttp's client
machinery (the SDK's settings minus bare), the SDK's own work (the SDK minus
aiohttp with its settings: decoding into typed, validated models, the retry
loop, the deadline, the rate limiter and server clock), and what target 1 would
leave the SDK's own work (1.08 x raw minus aiohttp with the SDK's settings).

The parts are differences at the loads the variants make, not fixed costs.
Client and simulator share two cores and each client keeps the concurrency's
requests in flight: a cheap client waits on the server more and wakes its event
loop once per response or so, a busier one handles many responses per wake-up.
So bare pays more per request for its loop than it would at aiohttp's pace
(aiohttp's part reads small), and the SDK's own work includes what aiohttp
spends more per request when the client is busier. Absolute µs follow the
machine's speed when the section ran: across sections, compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl

from happyrobot_async import _json

from . import throughput
from ._common import SimProcess, display_command, fmt, main_for, rotated, simulator, summary, table

VARIANTS = ("raw", "tuned", "bare", "sdk")
LABELS = {
    "raw": "raw aiohttp",
    "tuned": "aiohttp, the SDK's settings",
    "bare": "bare HTTP/1.1",
    "sdk": "happyrobot_async",
}
#: The parts, each a paired difference of two variants' client CPU per request.
PARTS = {
    "defaults": ("raw", "tuned", "aiohttp's default total timeout"),
    "machinery": ("tuned", "bare", "aiohttp's client machinery over a bare exchange"),
    "sdk_work": ("sdk", "tuned", "the SDK's own work over aiohttp with its settings"),
}
#: Issue 13, target 1: the SDK's client CPU per request at most this times raw aiohttp's.
CPU_TARGET = 1.08


class TunedAiohttp(throughput.RawAiohttp):
    """Raw aiohttp with the SDK's session settings (see the module's docstring)."""

    def __init__(self, sim: SimProcess, concurrency: int) -> None:
        self._base = sim.base_url
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            headers=sim.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def get(self, model_id: str) -> Any:
        url = yarl.URL(f"{self._base}/models/{model_id}", encoded=True)
        async with self._session.get(url, allow_redirects=False) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return json.loads(body)

    async def create(self, body: dict[str, Any]) -> Any:
        url = yarl.URL(f"{self._base}/models", encoded=True)
        data = json.dumps(body).encode()
        async with self._session.post(url, data=data, allow_redirects=False) as response:
            payload = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return json.loads(payload)


class _BareConnection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, answered with a `Content-Length`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.reusable = True
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0 or b"\r\ntransfer-encoding:" in head:
            self._answer(error=RuntimeError("bare HTTP/1.1 reads Content-Length bodies only"))
            return
        stop = head.find(b"\r\n", start + 2)
        length = int(head[start + 17 : stop if stop >= 0 else len(head)])
        if len(self._buffer) < end + 4 + length:
            return
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        if b"\r\nconnection: close" in head:
            self.reusable = False
        self._answer((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._answer(error=ConnectionError("connection lost"))

    def _answer(
        self, result: tuple[int, bytes] | None = None, error: Exception | None = None
    ) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            assert result is not None
            waiter.set_result(result)


class BareHttp:
    """HTTP/1.1 written on asyncio directly, with a pool of idle keep-alive connections."""

    def __init__(self, sim: SimProcess, concurrency: int) -> None:
        url = urlsplit(sim.base_url)
        assert url.hostname is not None and url.port is not None
        self._host, self._port, self._prefix = url.hostname, url.port, url.path.rstrip("/")
        headers = {"host": f"{url.hostname}:{url.port}", **sim.headers}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._idle: list[_BareConnection] = []
        self._all: list[_BareConnection] = []

    async def _exchange(self, method: str, path: str, body: bytes | None = None) -> Any:
        loop = asyncio.get_running_loop()
        while self._idle and not self._idle[-1].reusable:  # closed by the server meanwhile
            self._idle.pop()
        if self._idle:
            connection = self._idle.pop()
        else:
            _, connection = await loop.create_connection(_BareConnection, self._host, self._port)
            self._all.append(connection)
        assert connection.transport is not None
        length = "" if body is None else f"content-length: {len(body)}\r\n"
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._head}{length}\r\n".encode()
        connection.waiter = loop.create_future()
        connection.transport.write(head if body is None else head + body)
        status, payload = await connection.waiter
        if connection.reusable:
            self._idle.append(connection)
        else:
            connection.transport.close()
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        return json.loads(payload)

    async def get(self, model_id: str) -> Any:
        return await self._exchange("GET", f"/models/{model_id}")

    async def create(self, body: dict[str, Any]) -> Any:
        return await self._exchange("POST", "/models", json.dumps(body).encode())

    async def aclose(self) -> None:
        for connection in self._all:
            if connection.transport is not None:
                connection.transport.close()


def make_variant(name: str, sim: SimProcess, concurrency: int) -> throughput.Variant:
    """Open the client of variant `name`."""
    if name == "tuned":
        return TunedAiohttp(sim, concurrency)
    if name == "bare":
        return BareHttp(sim, concurrency)
    return throughput.make_variant(name, sim, concurrency)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every repetition x operation block at each concurrency; the parts, paired."""
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for op in args.ops:
            for concurrency in args.concurrency:
                order = rotated(VARIANTS, rep + len(runs))
                sizes = dict.fromkeys(order, args.requests)
                with simulator(*throughput.SIM_ARGS, seed=rep) as sim:
                    results = asyncio.run(
                        throughput.block(sim, op, concurrency, sizes, order, rep, make_variant)
                    )
                runs.append({"rep": rep, "op": op, "concurrency": concurrency, **results})
                print(
                    f"rep {rep} {op} c={concurrency}: "
                    + ", ".join(f"{n} {results[n]['cpu_us']:.0f} µs" for n in VARIANTS),
                    flush=True,
                )
    return {
        "benchmark": "floor",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "json_backend": _json.BACKEND,
        "simulator": display_command(throughput._sim_command()),
        "runs": runs,
        "summary": summarize(runs),
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per operation and concurrency: each variant's CPU per request, the parts, SDK/raw."""
    rows = []
    for op, concurrency in dict.fromkeys((r["op"], r["concurrency"]) for r in runs):
        block_runs = [r for r in runs if r["op"] == op and r["concurrency"] == concurrency]
        row: dict[str, Any] = {"op": op, "concurrency": concurrency}
        for name in VARIANTS:
            row[name] = summary([r[name]["cpu_us"] for r in block_runs])
        for part, (minuend, subtrahend, _) in PARTS.items():
            row[part] = summary(
                [r[minuend]["cpu_us"] - r[subtrahend]["cpu_us"] for r in block_runs]
            )
        row["budget"] = summary(
            [CPU_TARGET * r["raw"]["cpu_us"] - r["tuned"]["cpu_us"] for r in block_runs]
        )
        row["sdk_raw"] = summary([r["sdk"]["cpu_us"] / r["raw"]["cpu_us"] for r in block_runs])
        row["bare_raw"] = summary([r["bare"]["cpu_us"] / r["raw"]["cpu_us"] for r in block_runs])
        rows.append(row)
    return rows


def render(result: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    header = ["op", "conc.", *(LABELS[name] for name in VARIANTS), "SDK/raw", "bare/raw"]
    rows = [
        [
            row["op"],
            str(row["concurrency"]),
            *(fmt(row[name]) for name in VARIANTS),
            fmt(row["sdk_raw"], 3),
            fmt(row["bare_raw"], 3),
        ]
        for row in result["summary"]
    ]
    parts = [
        [
            row["op"],
            str(row["concurrency"]),
            *(fmt(row[part]) for part in PARTS),
            fmt(row["budget"]),
        ]
        for row in result["summary"]
    ]
    return "\n".join(
        [
            f"N = {result['requests']:,} requests per variant per block, "
            f"{result['repeat']} repetitions; median (min\u2013max). The SDK's JSON: "
            f"{result.get('json_backend', 'json')}.",
            "",
            "Client CPU µs per request:",
            "",
            table(header, rows),
            "",
            "Where the difference goes, µs per request (paired differences, at the loads "
            "the variants make):",
            "",
            table(
                [
                    "op",
                    "conc.",
                    *(label for _, _, label in PARTS.values()),
                    f"target 1 leaves the SDK's own work ({CPU_TARGET} \u00d7 raw \u2212 "
                    "aiohttp with the SDK's settings)",
                ],
                parts,
            ),
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sizes."""
    parser.add_argument("--requests", type=int, default=5000, help="N per variant per block")
    parser.add_argument("--concurrency", type=throughput._ints, default=[64])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ops", type=throughput._words, default=["get", "create"])


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        args.requests, args.concurrency, args.repeat = 60, [8], 1
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.floor [--requests N] [--concurrency 64] [--repeat 5]`."""
    return main_for(__doc__.splitlines()[0], add_arguments, _run, render, argv)


if __name__ == "__main__":
    raise SystemExit(main())
