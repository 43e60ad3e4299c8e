"""Response builders, including the broken ones that faults produce."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import attrs
from aiohttp import hdrs, web

from ._faults import Fault, retry_after_headers

#: Marks a response whose connection was dropped (for the counters).
DROPPED = "drop"
#: Marks a request that got no answer until the client left or the simulator closed.
HUNG = "hang"
#: Marks a response that stopped half way until the client left or the simulator closed.
STALLED = "stall"

#: How often a hung request checks whether its client is still connected (seconds).
_HANG_POLL = 0.05

_MALFORMED_BODY = b'{"id": "65a1f0c2e4b0a1b2c3d4e5f8", "status": "pend'


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """Return a JSON response."""
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Return the API's error shape: `{"message": ...}`."""
    return json_response(status, {"message": message}, headers)


def proxy_error(status: int, *, html: bool, retry_after: float | None = None) -> web.Response:
    """Return a 5xx as the API (JSON) or a proxy in front of it (HTML) would."""
    headers = retry_after_headers(retry_after) if retry_after is not None else None
    phrase = f"{status} {HTTPStatus(status).phrase}"
    if not html:
        return error_response(status, phrase, headers)
    page = (
        f"<html>\r\n<head><title>{phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html", headers=headers)


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Client Error"


def client_error(status: int, retry_after: float | None = None) -> web.Response:
    """Return a 4xx in the API's shape, as a server that refuses the request would."""
    headers = retry_after_headers(retry_after) if retry_after is not None else None
    return error_response(status, _phrase(status), headers)


def rate_limited(seconds: float) -> web.Response:
    """Return a 429 with `Retry-After` and `retry-after-ms`."""
    return error_response(429, "Too many requests", retry_after_headers(seconds))


def drop(request: web.Request) -> web.Response:
    """Close the connection without answering; the returned response is never sent."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


def redirect(request: web.Request, fault: Fault) -> web.Response:
    """Return a 307 to another origin."""
    location = fault.location or f"http://127.0.0.2:9{request.path_qs}"
    return web.Response(status=307, headers={"Location": location})


def malformed_json() -> web.Response:
    """Return a 200 whose body claims to be JSON and is not."""
    return web.Response(status=200, body=_MALFORMED_BODY, content_type="application/json")


def oversize(response: web.Response, size: int) -> web.Response:
    """Return `response`'s JSON body followed by `size` bytes of whitespace (still valid JSON)."""
    body = response.body if isinstance(response.body, bytes) else b""
    return web.Response(
        status=response.status, body=body + b" " * size, content_type=response.content_type
    )


def wrong_shape(route: str, fault: Fault) -> web.Response:
    """Return a 200 with valid JSON of the wrong shape."""
    if fault.body is not None:
        return json_response(200, fault.body)
    if route == "list":
        return json_response(200, {"models": [{"id": 5}]})
    return json_response(200, {"id": 5})


async def truncated(
    request: web.Request, response: web.Response, date: str | None = None
) -> web.StreamResponse:
    """Send `response` with a Content-Length longer than the half body written, then hang up.

    `date` is the `Date` header to send (None: aiohttp's, the real time).
    """
    body = response.body if isinstance(response.body, bytes) else b""
    stream = web.StreamResponse(status=response.status)
    if date is not None:
        stream.headers[hdrs.DATE] = date
    stream.content_type = response.content_type
    stream.content_length = len(body) + max(1, len(body) // 2)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return stream


@attrs.define
class Hangs:
    """Requests held without an answer until their client leaves or the simulator closes.

    `release()` (on close) frees every held request and makes new ones return at
    once, so closing never waits on a hung handler.
    """

    closing: bool = False
    _waiters: set[asyncio.Future[None]] = attrs.field(init=False, factory=set)

    async def hold(self, request: web.Request) -> web.Response:
        """Wait, answering nothing, then close the connection (the response is never sent)."""
        await self.wait(request)
        return drop(request)

    async def stall(
        self, request: web.Request, response: web.Response, date: str | None = None
    ) -> web.StreamResponse:
        """Send `response`'s status, headers and half its body; wait; then hang up.

        `date` is the `Date` header to send (None: aiohttp's, the real time).
        """
        body = response.body if isinstance(response.body, bytes) else b""
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        if date is not None:
            stream.headers[hdrs.DATE] = date
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        await self.wait(request)
        drop(request)
        return stream

    async def wait(self, request: web.Request) -> None:
        """Until the client disconnects or `release()`."""
        if not self.closing:
            released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.add(released)
            try:
                while not released.done() and _connected(request):
                    await asyncio.wait((released,), timeout=_HANG_POLL)
            finally:
                self._waiters.discard(released)

    def release(self) -> None:
        """Free every held request, and every one that arrives until `closing` is reset."""
        self.closing = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()
