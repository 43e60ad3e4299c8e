"""Sleeps that end early when the client closes, so a closed client keeps nobody waiting.

A request paced by the rate limiter may be booked seconds ahead (minutes, at
the limiter's floor); `close()` wakes every such sleeper at once, and the
request then sees the client closed and raises.
"""

from __future__ import annotations

import asyncio

__all__: list[str] = []


class Sleeps:
    """The sleeps in progress, and the way to cut them all short."""

    __slots__ = ("_sleeping",)

    def __init__(self) -> None:
        self._sleeping: set[asyncio.Future[None]] = set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or until `wake_all()`."""
        loop = asyncio.get_running_loop()
        woken = loop.create_future()
        timer = loop.call_later(seconds, _wake, woken)
        self._sleeping.add(woken)
        try:
            await woken
        finally:
            timer.cancel()
            self._sleeping.discard(woken)

    def wake_all(self) -> None:
        """End every sleep in progress now."""
        for woken in self._sleeping:
            _wake(woken)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
