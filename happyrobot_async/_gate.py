"""A first-come, first-served cap on requests in flight: `asyncio.Semaphore`, minus its cost.

Every request passes the gate, so the free case must be cheap: `take()` is a
plain method, and only a request that finds no free place awaits (`wait()`).
A place given back goes straight to the longest waiter, so nobody who arrives
later can take it first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress

__all__: list[str] = []


class Gate:
    """At most `size` holders at once."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Places free now."""
        return self._free

    @property
    def waiting(self) -> int:
        """Requests waiting for a place now."""
        return len(self._waiters)

    def take(self) -> bool:
        """Take a free place at once if there is one (and nobody waits for it)."""
        if self._free > 0:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait for a place, in turn; cancelled, the place (if already handed over) passes on."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # A cancelled waiter leaves the queue at once (as in asyncio.Semaphore), so
            # timeouts piling up behind hung requests hold no memory; one that was
            # handed a place just as it was cancelled passes the place on.
            if waiter.cancelled():
                with suppress(ValueError):  # unless `give` passed it by already
                    self._waiters.remove(waiter)
            else:
                self.give()
            raise

    def give(self) -> None:
        """Give a place back: to the longest waiter still waiting, else to the free ones."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
