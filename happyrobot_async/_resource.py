"""`client.models`: create, get, list, wait for and watch models; and their raw responses.

The resource talks to its client through `ClientCore` (a Protocol), so it
depends on no concrete client and no import points upwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, NotRequired, Protocol, TypedDict, TypeVar, Unpack

import attrs

from ._attempts import Decode
from ._follow import wait_for_model, watch_models
from ._logging import log
from ._response import Response, ResponseSink, response_sink
from ._wire import (
    Listed,
    ListItems,
    Request,
    decode_list,
    decode_model,
    decode_models,
    get_request,
    header,
    list_request,
)
from .types import CreateModel, Model, ModelStatus, StatusChange

__all__ = ["RawResponse"]

T = TypeVar("T")


class ClientCore(Protocol):
    """What the resource needs of its client (`HappyRobotClient`)."""

    @property
    def models(self) -> Models: ...
    @property
    def closed(self) -> bool: ...
    def _read(
        self, request: Request, decode: Decode[T], timeout: float | None = None
    ) -> Awaitable[T]: ...
    async def _send_once(self, request: Request, timeout: float | None) -> Response: ...
    def _create(self, create: CreateModel, timeout: float | None = None) -> Awaitable[Model]: ...
    def _claim(self, model_ids: Iterable[str]) -> None: ...
    async def _find_created(self, create: CreateModel, since: datetime) -> Model | None: ...


class Models:
    """`client.models`: create, get, list, wait for and watch models.

    `create`, `get` and `list` take `timeout=` (seconds, per HTTP attempt) to
    override the client's for that call.
    """

    def __init__(self, client: ClientCore) -> None:
        self._client = client
        self.with_raw_response = RawModels(self)
        """The same calls, answering a `RawResponse` (status, headers, request id...)."""

    async def create(
        self,
        *,
        use_case_id: str,
        name: str,
        from_model_id: str,
        train_sample_ids: Sequence[str],
        test_sample_ids: Sequence[str],
        explain_tools: bool = True,
        timeout: float | None = None,
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
        return await self._client._create(create, timeout)

    async def get(self, model_id: str, *, timeout: float | None = None) -> Model:
        """One model, with its sample ids."""
        return await self._client._read(get_request(model_id), decode_model, timeout)

    async def list(
        self,
        *,
        use_case_id: str | None = None,
        status: ModelStatus | str | None = None,
        trainable: bool | None = None,
        timeout: float | None = None,
    ) -> list[Model]:
        """Every model matching the filters (list items carry no sample ids).

        An item that is not a model (the server's data, not ours to fix) is left
        out and logged; the rest of the list is still returned.
        """
        request = list_request(use_case_id, status, trainable)
        listed: Listed = await self._client._read(request, decode_models, timeout)
        for item in listed.bad:
            log.warning("list: left out item %d (id %s): %s", item.index, item.model_id, item.error)
        return listed.models

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

    # -- the package's own ways in ---------------------------------------------------

    async def _list(self, *, use_case_id: str | None = None) -> Listed:
        """The list, with the items that did not decode set aside (reconciling's way in)."""
        return await self._client._read(list_request(use_case_id), decode_models)

    async def _create(self, create: CreateModel, *, earlier: Iterable[str] = ()) -> Model:
        """Create a validated request once (the batch runner's way in).

        `earlier`: the job's models from earlier attempts, which reconciling an
        ambiguous attempt must never adopt as this one's.
        """
        self._client._claim(earlier)
        return await self._client._create(create)

    async def _find_created(self, create: CreateModel, since: datetime) -> Model | None:
        """The model a create first sent at `since` (by an earlier run) stored, if any."""
        return await self._client._find_created(create, since)

    async def _poll_get(self, model_id: str, timeout: float) -> Model:
        """One GET, one attempt, its own deadline: the watcher retries on its own schedule."""
        request = get_request(model_id)
        response = await self._client._send_once(request, timeout)
        return decode_model(response.status, response.headers, response.body, request)

    async def _poll_list(self, use_case_id: str, timeout: float) -> ListItems:
        """One list of a use case, one attempt, its own deadline (see `_poll_get`).

        Its items are left undecoded: the watcher decodes only those that changed.
        """
        request = list_request(use_case_id)
        response = await self._client._send_once(request, timeout)
        return decode_list(response.status, response.headers, response.body, request)


@attrs.frozen(repr=False)
class RawResponse(Generic[T]):
    """The HTTP response a value came from: status, headers, request id, time taken.

    For a create the SDK settled by reconciling, it is the response of the GET
    that found the model.
    """

    status: int
    headers: Any
    """The response's headers (case-insensitive)."""
    elapsed: float
    """Seconds from sending the request to reading the whole body."""
    _value: T

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id`, if it sent one."""
        return header(self.headers, "x-request-id")

    def parse(self) -> T:
        """The typed value (`Model`, `list[Model]`)."""
        return self._value

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} request_id={self.request_id!r} {self.elapsed:.3f} s>"


class _CreateOptions(TypedDict):
    """`Models.create`'s keywords, so that `RawModels.create` need not repeat them."""

    use_case_id: str
    name: str
    from_model_id: str
    train_sample_ids: Sequence[str]
    test_sample_ids: Sequence[str]
    explain_tools: NotRequired[bool]
    timeout: NotRequired[float | None]


class _ListOptions(TypedDict, total=False):
    """`Models.list`'s keywords, so that `RawModels.list` need not repeat them."""

    use_case_id: str | None
    status: ModelStatus | str | None
    trainable: bool | None
    timeout: float | None


class RawModels:
    """`client.models.with_raw_response`: `create`, `get` and `list` answering `RawResponse`."""

    def __init__(self, models: Models) -> None:
        self._models = models

    async def create(self, **options: Unpack[_CreateOptions]) -> RawResponse[Model]:
        """`models.create(...)`, with the response it came from."""
        return await _raw(self._models.create(**options))

    async def get(self, model_id: str, *, timeout: float | None = None) -> RawResponse[Model]:
        """`models.get(...)`, with the response it came from."""
        return await _raw(self._models.get(model_id, timeout=timeout))

    async def list(self, **options: Unpack[_ListOptions]) -> RawResponse[list[Model]]:
        """`models.list(...)`, with the response it came from."""
        return await _raw(self._models.list(**options))


async def _raw(call: Awaitable[T]) -> RawResponse[T]:
    """Await `call` with a sink for its responses; its value, with the last one read."""
    sink = ResponseSink()
    token = response_sink.set(sink)
    try:
        value = await call
    finally:
        response_sink.reset(token)
    response = sink.last
    assert response is not None, "a value came back, so a response was read"
    return RawResponse(response.status, response.headers, response.elapsed, value)
