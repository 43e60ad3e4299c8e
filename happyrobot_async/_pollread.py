"""The poll loop's view of a client, and its two one-shot reads under one deadline.

A poll's deadline (`timeout`) covers all of it: waiting for a connection slot and
for the client's rate limiter, then the request itself. A poll past its deadline
raises `APITimeoutError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from ._wire import ListItems
from .errors import APITimeoutError
from .types import Model

__all__: list[str] = []

T = TypeVar("T")


class ModelReader(Protocol):
    """The one-shot reads the poll loop needs (`client.models`): one attempt, own deadline."""

    async def _poll_get(self, model_id: str, timeout: float) -> Model: ...
    async def _poll_list(self, use_case_id: str, timeout: float) -> ListItems: ...


class WatchableClient(Protocol):
    """Anything with a `models` reader and a `closed` flag, e.g. `HappyRobotClient`."""

    @property
    def models(self) -> ModelReader: ...
    @property
    def closed(self) -> bool: ...


async def read_get(client: WatchableClient, model_id: str, timeout: float) -> Model:
    """`GET /models/{model_id}` once, all of it within `timeout` seconds."""
    return await _within(client.models._poll_get(model_id, timeout), f"/models/{model_id}", timeout)


async def read_list(client: WatchableClient, use_case_id: str, timeout: float) -> ListItems:
    """`GET /models?use_case_id=…` once, all of it within `timeout` seconds."""
    return await _within(client.models._poll_list(use_case_id, timeout), "/models", timeout)


async def _within(read: Awaitable[T], path: str, timeout: float) -> T:
    """Await `read` (not yet started) under `timeout`; past it, `APITimeoutError` for `path`.

    The client's own `APITimeoutError` (its request timed out) passes as it is.
    """
    try:
        async with asyncio.timeout(timeout):
            return await read
    except APITimeoutError:
        raise
    except TimeoutError:
        raise APITimeoutError(f"no answer within {timeout:g} s", method="GET", path=path) from None
