"""One-shot ways to follow models, behind `client.models.wait` and `client.models.watch`.

Each runs a `TrainingWatcher` of its own for the call's duration, and uses only
its public surface, so a model ends the call as its handle ends: a model the
server refuses (`NotFoundError`, `PermissionDeniedError`, `BadRequestError`) or
answers with something that is not that model (`ResponseValidationError`) raises
that error at once; transient errors are retried on the watcher's schedule; a
client closed meanwhile raises `WatcherClosedError`; an error about the client
itself (bound to another event loop, its session closed by its owner) is raised.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable

from ._handles import WatchHandle
from ._pollread import WatchableClient
from .types import Model, StatusChange, check_model_id
from .watcher import TrainingWatcher

__all__: list[str] = []


async def wait_for_model(
    client: WatchableClient,
    model_id: str,
    *,
    timeout: float | None = None,
    poll_interval: float = 2.0,
    raise_on_failure: bool = False,
) -> Model:
    """Poll one model until it is `active` or `failed`; return its final state.

    Raises the error its handle ends with (see the module docstring), `WatchTimeoutError`
    after `timeout`, or `TrainingFailedError` for a failed model if `raise_on_failure`.
    """
    check_model_id(model_id)
    async with TrainingWatcher(
        client, poll_interval=poll_interval, max_poll_interval=max(30.0, poll_interval)
    ) as watcher:
        return await watcher.track(model_id, timeout=timeout, raise_on_failure=raise_on_failure)


async def watch_models(
    client: WatchableClient, model_ids: Iterable[str], *, poll_interval: float = 2.0
) -> AsyncGenerator[StatusChange, None]:
    """Every status change of these models, until all of them are terminal.

    If a model cannot be watched (e.g. `NotFoundError`), its error is raised once the
    changes already seen are yielded. Close the iterator early with `aclosing()`.
    """
    ids = list(dict.fromkeys(check_model_id(model_id) for model_id in model_ids))
    if not ids:
        return
    async with TrainingWatcher(
        client,
        poll_interval=poll_interval,
        max_poll_interval=max(30.0, poll_interval),
        queue_size=max(10_000, 16 * len(ids)),
    ) as watcher:
        stream = watcher.changes()
        handles = [watcher.track(model_id) for model_id in ids]
        remaining = len(handles)

        def settled(handle: WatchHandle) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 or handle.exception() is not None:
                stream.close()

        for handle in handles:
            handle.add_done_callback(settled)
        async for change in stream:
            yield change
        for handle in handles:
            if handle.done() and (error := handle.exception()) is not None:
                raise error
