"""Preflight: before a batch creates anything, check what a setup mistake would break.

One list per use case checks the key, the base URL and the use case; one GET
per distinct `from_model_id` checks the models to clone. The requests run
concurrently (at most `concurrency` at once) and every problem is collected, so
`PreflightError` lists them all, each with the URL that showed it. When the key
or the URL itself is wrong (a 401, 403, 3xx or connection failure, or every
list failing), the GETs are skipped: they would only say it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    HappyRobotError,
    NotFoundError,
    PermissionDeniedError,
    PreflightError,
    PreflightProblem,
)

if TYPE_CHECKING:
    from .client import HappyRobotClient

__all__: list[str] = []


async def preflight(
    client: HappyRobotClient,
    use_cases: Mapping[str, Sequence[str]],
    sources: Mapping[str, Sequence[str]],
    *,
    concurrency: int,
) -> int:
    """Check each use case (job labels by use case id) and each `from_model_id` (labels by id).

    Returns the number of requests made; raises `PreflightError` with every problem.
    """
    base = client.base_url.rstrip("/")
    slots = asyncio.Semaphore(concurrency)
    problems: list[PreflightProblem] = []
    global_trouble = False

    async def check(
        url: str, call: Awaitable[object], labels: Sequence[str], listing: bool
    ) -> None:
        nonlocal global_trouble
        async with slots:
            try:
                await call
            except HappyRobotError as exc:
                problems.append(PreflightProblem(_why(exc, listing), url, tuple(labels)))
                global_trouble = global_trouble or _setup_wide(exc)

    lists = [
        check(f"GET {base}/models?use_case_id={quote(uc)}", _list(client, uc), labels, True)
        for uc, labels in use_cases.items()
    ]
    await asyncio.gather(*lists)
    requests = len(lists)
    if not global_trouble and len(problems) < len(lists):  # when every list fails: the URL
        gets = [
            check(f"GET {base}/models/{model_id}", client.models.get(model_id), labels, False)
            for model_id, labels in sources.items()
        ]
        await asyncio.gather(*gets)
        requests += len(gets)
    if problems:
        raise PreflightError(problems)
    return requests


async def _list(client: HappyRobotClient, use_case_id: str) -> None:
    await client.models.list(use_case_id=use_case_id)


def _setup_wide(exc: HappyRobotError) -> bool:
    """A failure every other request would repeat: the key, the URL, the network."""
    if isinstance(exc, APIConnectionError | AuthenticationError | PermissionDeniedError):
        return True
    return isinstance(exc, APIStatusError) and (300 <= exc.status_code < 400)


def _why(exc: HappyRobotError, listing: bool) -> str:
    """What a failed preflight request means for the batch, in a few words."""
    if isinstance(exc, AuthenticationError):
        return "the API key was refused (401 Unauthorized)"
    if isinstance(exc, PermissionDeniedError):
        return "this API key may not use the models API (403 Forbidden)"
    if isinstance(exc, APIStatusError) and 300 <= exc.status_code < 400:
        return (
            f"redirected ({exc.status_code} {exc.message}): the base URL is probably wrong "
            "(http or https? does it end in /api/v1?)"
        )
    if isinstance(exc, NotFoundError):
        if listing:
            return "not found (404): the base URL must end in /api/v1, and the use case must exist"
        return "from_model_id does not exist, or this key cannot see it (404 Not Found)"
    if isinstance(exc, APIConnectionError):
        return f"cannot reach the server: {exc.message}"
    return str(exc)
