"""Response builders, including the broken ones that faults produce."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ._faults import Fault, retry_after_headers

#: Marks a response whose connection was dropped (for the counters).
DROPPED = "drop"

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


def wrong_shape(route: str, fault: Fault) -> web.Response:
    """Return a 200 with valid JSON of the wrong shape."""
    if fault.body is not None:
        return json_response(200, fault.body)
    if route == "list":
        return json_response(200, {"models": [{"id": 5}]})
    return json_response(200, {"id": 5})


async def truncated(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Send `response` with a Content-Length longer than the half body written, then hang up."""
    body = response.body if isinstance(response.body, bytes) else b""
    stream = web.StreamResponse(status=response.status)
    stream.content_type = response.content_type
    stream.content_length = len(body) + max(1, len(body) // 2)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return stream
