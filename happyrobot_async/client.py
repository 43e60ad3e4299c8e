"""`HappyRobotClient`: configuration, the session's lifetime, and the `models` resource."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import aiohttp

from ._attempts import Attempts
from ._config import (
    api_key_from,
    base_url_from,
    check_count,
    check_positive,
)
from ._create import Reconciler, create_safely
from ._follow import wait_for_model, watch_models
from ._http import DEFAULT_MAX_RESPONSE_BYTES, Transport
from ._logging import log
from ._retry import RetryBudget, RetryPolicy
from ._version import __version__
from ._wire import Listed, Request, decode_model, decode_models, get_request, list_request
from .errors import InvalidRequestError
from .types import CreateModel, Model, ModelStatus, StatusChange
from .watcher import OnChange, TrainingWatcher

__all__ = ["HappyRobotClient"]

T = TypeVar("T")
Decode = Callable[..., T]


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
        self.organization_id = organization_id
        check_count("max_concurrency", max_concurrency, 1)
        check_count("max_retries", max_retries, 0)
        check_count("max_response_bytes", max_response_bytes, 1)
        check_positive("timeout", timeout)
        check_positive("connect_timeout", connect_timeout)
        if rate_limit is not None:
            check_positive("rate_limit", rate_limit, "requests/s")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidRequestError("session", "must be an aiohttp.ClientSession")
        if retry_policy is None:
            retry_policy = RetryPolicy(max_retries=max_retries)
        self.retry_policy = retry_policy
        self.retry_budget = RetryBudget()
        self._attempts = Attempts(retry_policy, self.retry_budget)
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
        self.models = Models(self)
        self._reconciler = Reconciler(
            self.models, self._transport.server_clock, retry_policy, self._attempts.sleep
        )

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

    def watcher(
        self,
        *,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        backoff_factor: float = 1.5,
        jitter: float = 0.1,
        queue_size: int = 10_000,
        on_change: OnChange | None = None,
        rng: random.Random | None = None,
    ) -> TrainingWatcher:
        """A `TrainingWatcher` on this client: one poll loop for many models."""
        return TrainingWatcher(
            self,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            backoff_factor=backoff_factor,
            jitter=jitter,
            queue_size=queue_size,
            on_change=on_change,
            rng=rng,
        )

    async def _read(self, request: Request, decode: Decode[T]) -> T:
        """Send a GET and decode it, retrying as the policy and the retry budget allow."""

        async def attempt(number: int) -> T:
            response = await self._transport.send(request, number)
            return decode(response.status, response.headers, response.body, request)

        label = f"{request.method} {request.path}"
        fields = {"method": request.method, "path": request.path}
        return await self._attempts.run(attempt, label=label, fields=fields)


class Models:
    """`client.models`: create, get, list, wait for and watch models."""

    def __init__(self, client: HappyRobotClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        use_case_id: str,
        name: str,
        from_model_id: str,
        train_sample_ids: Sequence[str],
        test_sample_ids: Sequence[str],
        explain_tools: bool = True,
    ) -> Model:
        """Clone `from_model_id` and start training it; safe to retry, never duplicated."""
        create = CreateModel(
            use_case_id=use_case_id,
            name=name,
            from_model_id=from_model_id,
            train_sample_ids=train_sample_ids,
            test_sample_ids=test_sample_ids,
            explain_tools=explain_tools,
        )
        return await self._create(create)

    async def _create(self, create: CreateModel) -> Model:
        """Create a validated request once (the batch runner's way in)."""
        client = self._client
        return await create_safely(
            client._transport.send, client._attempts, client._reconciler, create
        )

    async def _find_created(self, create: CreateModel, since: datetime) -> Model | None:
        """The model a create first sent at `since` (by an earlier run) stored, if any."""
        return await self._client._reconciler.reconcile(create, since.timestamp())

    async def _poll_get(self, model_id: str, timeout: float) -> Model:
        """One GET, one attempt, its own deadline: the watcher retries on its own schedule."""
        request = get_request(model_id)
        response = await self._client._transport.send(request, timeout=timeout)
        return decode_model(response.status, response.headers, response.body, request)

    async def _poll_list(self, use_case_id: str, timeout: float) -> Listed:
        """One list of a use case, one attempt, its own deadline (see `_poll_get`)."""
        request = list_request(use_case_id)
        response = await self._client._transport.send(request, timeout=timeout)
        return decode_models(response.status, response.headers, response.body, request)

    async def get(self, model_id: str) -> Model:
        """One model, with its sample ids."""
        return await self._client._read(get_request(model_id), decode_model)

    async def list(
        self,
        *,
        use_case_id: str | None = None,
        status: ModelStatus | str | None = None,
        trainable: bool | None = None,
    ) -> list[Model]:
        """Every model matching the filters (list items carry no sample ids).

        An item that is not a model (the server's data, not ours to fix) is left
        out and logged; the rest of the list is still returned.
        """
        listed = await self._list(use_case_id=use_case_id, status=status, trainable=trainable)
        for item in listed.bad:
            log.warning("list: left out item %d (id %s): %s", item.index, item.model_id, item.error)
        return listed.models

    async def _list(
        self,
        *,
        use_case_id: str | None = None,
        status: ModelStatus | str | None = None,
        trainable: bool | None = None,
    ) -> Listed:
        """The list, with the items that did not decode set aside (the watcher's way in)."""
        request = list_request(use_case_id, status, trainable)
        return await self._client._read(request, decode_models)

    async def wait(
        self,
        model_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        raise_on_failure: bool = False,
    ) -> Model:
        """Poll one model until it is `active` or `failed`; return its final state."""
        return await wait_for_model(
            self._client,
            model_id,
            timeout=timeout,
            poll_interval=poll_interval,
            raise_on_failure=raise_on_failure,
        )

    def watch(
        self, model_ids: Iterable[str], *, poll_interval: float = 2.0
    ) -> AsyncIterator[StatusChange]:
        """Every status change of these models, until all of them are terminal."""
        return watch_models(self._client, list(model_ids), poll_interval=poll_interval)
