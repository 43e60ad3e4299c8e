"""The only module that touches aiohttp: session, timeouts, limits, error mapping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from . import errors
from ._ratelimit import AdaptiveRateLimiter
from ._wire import Request

__all__: list[str] = []

log = logging.getLogger("happyrobot_async")


@attrs.frozen
class Response:
    """An HTTP response, fully read."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport:
    """Sends `Request`s over one `aiohttp.ClientSession`, owned or borrowed.

    Caps requests in flight (`max_concurrency`), paces them (`rate_limit`),
    never follows redirects, and turns aiohttp's exceptions into ours.
    """

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        max_concurrency: int,
        rate_limit: float | None,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._limiter = AdaptiveRateLimiter(rate_limit) if rate_limit else None
        self._session = session
        self._owns_session = session is None
        # A session of our own carries headers and timeout once; a borrowed one
        # gets them on every request (aiohttp merges per-request headers each time).
        self._per_request: dict[str, Any] = (
            {} if session is None else {"headers": self._headers, "timeout": self._timeout}
        )

    @property
    def rate_limiter(self) -> AdaptiveRateLimiter | None:
        """The shared pacing, if a `rate_limit` was set."""
        return self._limiter

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_concurrency)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._timeout
            )
            # aiohttp silently resends a GET once when a pooled connection drops;
            # our retry policy does that, and `max_retries` must mean what it says.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def close(self) -> None:
        """Close the session if we opened it; a borrowed one is the caller's."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: Request, attempt: int = 1) -> Response:
        """Send once and read the whole body; raise `APIConnectionError` on no response."""
        session = self._ensure_session()
        async with self._slots:
            if self._limiter is not None:
                wait = self._limiter.reserve(time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
            started = time.perf_counter()
            try:
                async with session.request(
                    request.method,
                    self._base_url + request.path,
                    params=request.params or None,
                    data=request.body,
                    allow_redirects=False,
                    **self._per_request,
                ) as raw:
                    body = await raw.read()
                    response = Response(raw.status, raw.headers, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _connection_error(exc, request) from exc
        self._pace(response.status)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %d (attempt %d, %.1f ms)",
                request.method,
                request.path,
                response.status,
                attempt,
                (time.perf_counter() - started) * 1000,
            )
        return response

    def _pace(self, status: int) -> None:
        if self._limiter is None:
            return
        if status == 429:
            self._limiter.on_throttled(time.monotonic())
        else:
            self._limiter.on_success()


def _connection_error(exc: BaseException, request: Request) -> errors.APIConnectionError:
    """Map aiohttp's failure to ours, noting whether the request can have reached the server."""
    method, path = request.method, request.path
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return errors.APITimeoutError(
            "connect timed out", method=method, path=path, request_sent=False
        )
    if isinstance(exc, TimeoutError):
        return errors.APITimeoutError(
            "timed out waiting for the response", method=method, path=path
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return errors.APIConnectionError(
            f"could not connect: {reason}", method=method, path=path, request_sent=False
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return errors.APIConnectionError("response cut short", method=method, path=path)
    return errors.APIConnectionError(
        f"connection lost: {type(exc).__name__}", method=method, path=path
    )
