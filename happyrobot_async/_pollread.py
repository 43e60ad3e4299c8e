"""The poll loop's view of a client, and its two one-shot reads under one deadline.

A poll's deadline (`timeout`) covers all of it: waiting for a connection slot and
for the client's rate limiter, then the request itself. A poll past its deadline
raises `APITimeoutError`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ._wire import Listed
from .errors import APITimeoutError
from .types import Model

__all__: list[str] = []


class ModelReader(Protocol):
    """The one-shot reads the poll loop needs (`client.models`): one attempt, own deadline."""

    async def _poll_get(self, model_id: str, timeout: float) -> Model: ...
    async def _poll_list(self, use_case_id: str, timeout: float) -> Listed: ...


class WatchableClient(Protocol):
    """Anything with a `models` reader and a `closed` flag, e.g. `HappyRobotClient`."""

    @property
    def models(self) -> ModelReader: ...
    @property
    def closed(self) -> bool: ...


async def read_get(client: WatchableClient, model_id: str, timeout: float) -> Model:
    """`GET /models/{model_id}` once, all of it within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await client.models._poll_get(model_id, timeout)
    except APITimeoutError:
        raise
    except TimeoutError:
        raise _timed_out(f"/models/{model_id}", timeout) from None


async def read_list(client: WatchableClient, use_case_id: str, timeout: float) -> Listed:
    """`GET /models?use_case_id=…` once, all of it within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await client.models._poll_list(use_case_id, timeout)
    except APITimeoutError:
        raise
    except TimeoutError:
        raise _timed_out("/models", timeout) from None


def _timed_out(path: str, timeout: float) -> APITimeoutError:
    return APITimeoutError(f"no answer within {timeout:g} s", method="GET", path=path)
