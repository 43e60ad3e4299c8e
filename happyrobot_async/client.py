"""`HappyRobotClient`: configuration, the session's lifetime, and the core the resources use.

`client.models` (in `_resource`) builds requests and calls back here to send
them: reads through the one attempt loop, creates through the safe create.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Awaitable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TypeVar, Unpack

import aiohttp
import attrs

from ._attempts import Attempts, Decode, Send
from ._config import (
    api_key_from,
    base_url_from,
    check_count,
    check_positive,
    organization_id_from,
)
from ._create import create_safely
from ._http import DEFAULT_MAX_RESPONSE_BYTES, Transport
from ._reconcile import Reconciler
from ._resource import Models
from ._response import Response
from ._retry import RetryBudget, RetryPolicy
from ._version import __version__
from ._wire import Request
from .errors import InvalidRequestError
from .types import CreateModel, Model
from .watcher import TrainingWatcher, WatcherOptions

__all__ = ["HappyRobotClient"]

T = TypeVar("T")


class HappyRobotClient:
    """An asyncio client for HappyRobot's models API.

    Use it as `async with HappyRobotClient() as client:`; it opens (and closes)
    its own `aiohttp.ClientSession`, or borrows `session` and never closes it.
    The key comes from `api_key`, else `HAPPYROBOT_API_KEY`; the URL from
    `base_url`, else `HAPPYROBOT_BASE_URL`, else the public API.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        organization_id: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        retry_policy: RetryPolicy | None = None,
        max_concurrency: int = 64,
        rate_limit: float | None = None,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        key = api_key_from(api_key)
        self.base_url = base_url_from(base_url)
        self.organization_id = organization_id_from(organization_id)
        check_count("max_concurrency", max_concurrency, 1)
        check_count("max_retries", max_retries, 0)
        check_count("max_response_bytes", max_response_bytes, 1)
        check_positive("timeout", timeout)
        check_positive("connect_timeout", connect_timeout)
        if rate_limit is not None:
            check_positive("rate_limit", rate_limit, "requests/s")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidRequestError("session", "must be an aiohttp.ClientSession")
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise InvalidRequestError("retry_policy", "must be a RetryPolicy")
        if retry_policy is None:
            retry_policy = RetryPolicy(max_retries=max_retries)
        self.retry_budget = RetryBudget()
        self._timeout: float | None = None  # None: the transport's; with_options sets one
        headers = {
            "authorization": f"Bearer {key}",
            "accept": "application/json",
            "content-type": "application/json",
            "user-agent": f"happyrobot-async/{__version__}",
        }
        if organization_id is not None:
            headers["x-organization-id"] = organization_id
        self._transport = Transport(
            self.base_url,
            headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            session=session,
            max_response_bytes=max_response_bytes,
        )
        self._use_policy(retry_policy)

    def __repr__(self) -> str:
        return f"HappyRobotClient(base_url={self.base_url!r}, api_key=<hidden>)"

    async def __aenter__(self) -> HappyRobotClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once `close()` was called; a closed client sends nothing more."""
        return self._transport.closed

    async def close(self) -> None:
        """Release the connection pool (unless the session was the caller's)."""
        await self._transport.close()

    def watcher(self, **options: Unpack[WatcherOptions]) -> TrainingWatcher:
        """A `TrainingWatcher` on this client: one poll loop for many models.

        Takes `TrainingWatcher`'s keyword options (`poll_interval`, `on_change`...).
        """
        return TrainingWatcher(self, **options)

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> HappyRobotClient:
        """A client like this one with other options, sharing its session, connection pool,
        rate limiter, retry budget and server clock (closing either closes both).

        `max_retries` replaces the policy's; `retry_policy` replaces it whole.
        """
        if timeout is not None:
            check_positive("timeout", timeout)
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise InvalidRequestError("retry_policy", "must be a RetryPolicy")
        policy = retry_policy or self.retry_policy
        if max_retries is not None:
            check_count("max_retries", max_retries, 0)
            policy = attrs.evolve(policy, max_retries=max_retries)
        clone = copy.copy(self)
        clone._timeout = timeout if timeout is not None else self._timeout
        clone._use_policy(policy)
        return clone

    def _use_policy(self, policy: RetryPolicy) -> None:
        self.retry_policy = policy
        self._attempts = Attempts(policy, self.retry_budget)
        self.models = Models(self)
        self._reconciler = Reconciler(
            self.models, self._transport.server_clock, policy, self._attempts.sleep
        )

    async def _send_once(self, request: Request, timeout: float | None = None) -> Response:
        return await self._transport.send(request, timeout=timeout or self._timeout)

    def _read(
        self, request: Request, decode: Decode[T], timeout: float | None = None
    ) -> Awaitable[T]:
        """Send a GET and decode it, retrying as the policy and the retry budget allow."""
        return self._attempts.run(request, decode, send=self._sender(timeout))

    def _create(self, create: CreateModel, timeout: float | None = None) -> Awaitable[Model]:
        """Create a validated request once, whatever the network does (see `_create`)."""
        send = self._sender(timeout)
        within = timeout or self._timeout or self._transport.timeout
        return create_safely(send, self._attempts, self._reconciler, create, timeout=within)

    def _claim(self, model_ids: Iterable[str]) -> None:
        """No create of this client may adopt these models (a job's earlier ones)."""
        for model_id in model_ids:
            self._reconciler.claim_id(model_id)

    def _sender(self, timeout: float | None) -> Send:
        """The transport's `send`, with this call's timeout (else the client's) bound in."""
        if timeout is None:
            timeout = self._timeout
        else:
            check_positive("timeout", timeout)
        send = self._transport.send
        return send if timeout is None else functools.partial(send, timeout=timeout)

    async def _find_created(self, create: CreateModel, since: datetime) -> Model | None:
        """The model a create first sent at `since` (by an earlier run) stored, if any."""
        return await self._reconciler.reconcile(create, since.timestamp())  # claims it
