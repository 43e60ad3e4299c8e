"""The only module that touches aiohttp: session, timeouts, limits, body cap, error mapping.

aiohttp keeps the connect timeout; the whole-request timeout is ours (`Deadlines`),
which costs a fraction of aiohttp's per-request timer.

Every response also feeds the client's estimate of the server's clock (its
`Date` header) and the adaptive rate limiter (429 or not).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import yarl

from . import errors
from ._deadlines import Deadlines, EndedByClose
from ._gate import Gate
from ._logging import log
from ._ratelimit import AdaptiveRateLimiter
from ._response import Response, keep_response
from ._serverclock import ServerClock
from ._sleeps import Sleeps
from ._wire import Request

__all__: list[str] = []


#: The default cap on a response body: far above any real answer, far below a runaway one.
DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
_CHUNK: Final = 256 * 1024


class Transport:
    """Sends `Request`s over one `aiohttp.ClientSession`, owned or borrowed.

    Caps requests in flight (`max_concurrency`), paces them (`rate_limit`, or
    from the first 429 on), caps response bodies (`max_response_bytes`), never
    follows redirects, and turns aiohttp's exceptions into ours. It serves one
    event loop, the one it first ran on, until it is closed.
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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        # Encoded once here; request paths are built from checked, URL-safe parts,
        # so each request's URL is taken as it is instead of being parsed again.
        self._base_url = str(yarl.URL(base_url)).rstrip("/")  # after `/.` is resolved
        self._headers = dict(headers)
        self._secret = self._headers["authorization"].removeprefix("Bearer ").encode()
        self._total = timeout
        self._deadlines = Deadlines()
        # aiohttp's part: connecting only (a borrowed session's own `total` is overridden too)
        self._connect_only = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._max_concurrency = max_concurrency
        self._gate = Gate(max_concurrency)
        self._pacing = Sleeps()
        self.rate_limiter = AdaptiveRateLimiter(rate_limit)
        self.server_clock = ServerClock()
        self._epoch = time.time() - time.perf_counter()  # perf_counter → epoch seconds
        self._max_bytes = max_response_bytes
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._abandoned: weakref.finalize[..., Transport] = weakref.finalize(self, _nothing)
        # A session of our own carries headers and timeout once; a borrowed one
        # gets them on every request (aiohttp merges per-request headers each time),
        # and never raises for a status itself: we map statuses to our errors.
        self._per_request: dict[str, Any] = (
            {}
            if session is None
            else {
                "headers": self._headers,
                "timeout": self._connect_only,
                "raise_for_status": False,
            }
        )

    def _ensure_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._closed:
                raise errors.HappyRobotError(_CLOSED)
            if self._loop is not None:
                raise errors.HappyRobotError(
                    "the client is bound to the event loop it first ran on; "
                    "make one client per event loop"
                )
            self._loop = loop
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_concurrency)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._connect_only,
                cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies
            )
            # aiohttp silently resends a GET once when a pooled connection drops;
            # our retry policy does that, and `max_retries` must mean what it says.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
            # A client dropped (or alive at exit) without close(): release its
            # connections quietly instead of leaving "Unclosed connector" warnings.
            self._abandoned = weakref.finalize(self, _release, connector)
        return self._session

    @property
    def timeout(self) -> float:
        """The whole-request timeout requests get unless they say otherwise."""
        return self._total

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    async def close(self) -> None:
        """Close the session if we opened it; a borrowed one is the caller's."""
        self._closed, self._loop = True, None
        self._pacing.wake_all()  # requests waiting for their turn: end them now
        self._deadlines.end_all()  # and the ones in flight (a stalled body read never wakes)
        if self._owns_session and self._session is not None:
            self._abandoned.detach()
            await self._session.close()
            self._session = None

    async def send(
        self, request: Request, attempt: int = 1, *, timeout: float | None = None
    ) -> Response:
        """Send once and read the whole body; raise `APIConnectionError` on no response.

        `timeout` (seconds, whole request) replaces the client's for this request.
        """
        session = self._session
        if session is None or self._loop is not asyncio.get_running_loop():
            session = self._ensure_session()
        gate = self._gate
        if not gate.take():
            await gate.wait()
        try:
            if session.closed:  # closed while this request waited for a place
                raise errors.HappyRobotError(_CLOSED if self._closed else _CLOSED_BY_OWNER)
            started = time.perf_counter()  # the limiter's clock too: perf_counter is monotonic
            wait = self.rate_limiter.reserve(started)
            if wait > 0:
                started = await self._pace(wait)
                if self._closed or session.closed:  # closed while it waited for its turn
                    raise errors.HappyRobotError(_CLOSED if self._closed else _CLOSED_BY_OWNER)
            try:
                with self._deadlines.after(self._total if timeout is None else timeout):
                    async with session.request(
                        request.method,
                        yarl.URL(self._base_url + request.path, encoded=True),
                        params=request.params or None,
                        data=request.body,
                        allow_redirects=False,
                        **self._per_request,
                    ) as raw:
                        length = raw.content_length
                        # a compressed body's length says nothing of what it inflates to
                        if (
                            length is not None
                            and length <= self._max_bytes
                            and "Content-Encoding" not in raw.headers
                        ):
                            body = await raw.read()
                        else:
                            body = await self._read_capped(raw, request)
            except (aiohttp.ClientError, TimeoutError, EndedByClose) as exc:
                raise _connection_error(exc, request) from exc
        finally:
            gate.give()
        return self._received(request, attempt, raw.status, raw.headers, body, started)

    async def _pace(self, wait: float) -> float:
        """Wait the limiter's `wait` (cut short by `close()`); return when it ended."""
        try:
            await self._pacing.sleep(wait)
        except asyncio.CancelledError:
            self.rate_limiter.release()  # the slot booked for this request goes to the next one
            raise
        return time.perf_counter()

    def _received(
        self,
        request: Request,
        attempt: int,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        started: float,
    ) -> Response:
        """The response, with what it tells the server clock and the rate limiter noted."""
        received = time.perf_counter()
        if status >= 300 and self._secret in body:  # a server echoing our key
            body = body.replace(self._secret, b"<hidden>")
        response = Response(status, headers, body, received - started)
        date = headers.get("Date")
        if date is not None:  # our epoch, from the monotonic clock: no wall-clock calls here
            self.server_clock.observe_date(date, started + self._epoch, received + self._epoch)
        if status == 429:
            self.rate_limiter.on_throttled(received)
        else:
            self.rate_limiter.on_success(received)
        keep_response(response)
        if log.isEnabledFor(logging.DEBUG):
            elapsed = round(response.elapsed * 1000, 1)
            fields = {"method": request.method, "path": request.path, "status": status}
            log.debug(
                "%s %s -> %d (attempt %d, %.1f ms)",
                request.method,
                request.path,
                status,
                attempt,
                elapsed,
                extra={**fields, "attempt": attempt, "elapsed": elapsed},
            )
        return response

    async def _read_capped(self, raw: aiohttp.ClientResponse, request: Request) -> bytes:
        """A body of unknown or too great length: read up to the cap, else refuse it."""
        cap = self._max_bytes
        length = raw.content_length
        chunks: list[bytes] = []
        size = 0
        while length is None or length <= cap:
            chunk = await raw.content.read(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > cap:
                break
            chunks.append(chunk)
        raw.close()  # do not read on: drop the connection instead
        raise errors.ResponseValidationError(
            f"{request.method} {request.path}: response body larger than {cap} bytes",
            status_code=raw.status,
            path="",
        )


_CLOSED: Final = "the client is closed; make a new one"
_CLOSED_BY_OWNER: Final = "the session given to the client was closed by its owner"


def _nothing() -> None:
    pass


def _release(connector: aiohttp.BaseConnector) -> None:
    """Close an abandoned connector's sockets at once, with no event loop needed."""
    close_now = getattr(connector, "_close", None)  # aiohttp's synchronous part of close()
    if close_now is not None and not connector.closed:
        close_now()


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
    if isinstance(exc, EndedByClose):
        return errors.APIConnectionError(
            "connection lost: the client was closed", method=method, path=path
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return errors.APIConnectionError("response cut short", method=method, path=path)
    return errors.APIConnectionError(
        f"connection lost: {type(exc).__name__}", method=method, path=path
    )
