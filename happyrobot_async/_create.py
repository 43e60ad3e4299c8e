"""Safe creates: resend what is safe, reconcile what is ambiguous, never train twice.

`POST /models` has no idempotency key. When an attempt fails in a way that
leaves its outcome unknown (the request may have been stored), `_reconcile`
looks for the model before anything is sent again; only when the server shows
that no candidate could be ours is the create resent. Still unknown when the
retries run out: `AmbiguousCreateError`, never a guess. Which failures are
ambiguous is `_retry`'s table; the loop is `_attempts`'.

After a read timeout the server may still be working on the request, so the
second look waits one more request timeout (at most `MAX_SETTLE` seconds)
rather than `reconcile_delay`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from ._attempts import Attempts
from ._logging import log
from ._reconcile import Reconciler
from ._response import Response
from ._wire import Request, create_request, decode_model
from .errors import AmbiguousCreateError, APITimeoutError, HappyRobotError
from .types import CreateModel, Model

__all__: list[str] = []

Send = Callable[[Request, int], Awaitable[Response]]

#: The longest the second look of a reconcile waits after a read timeout.
MAX_SETTLE: Final = 30.0


async def create_safely(
    send: Send,
    attempts: Attempts,
    reconciler: Reconciler,
    create: CreateModel,
    *,
    timeout: float | None = None,
) -> Model:
    """Create the model once, whatever the network does; see the module docstring.

    `timeout` is the request timeout the attempts run under (for the settle wait).
    """
    safe = _SafeCreate(send, reconciler, create, timeout)
    model = await attempts.run(safe.request, safe.decode, send=safe.send, reconcile=safe)
    return reconciler.claim(model)


class _SafeCreate:
    """One create's attempts, and how to settle an ambiguous one."""

    def __init__(
        self, send: Send, reconciler: Reconciler, create: CreateModel, timeout: float | None
    ) -> None:
        self._send, self.reconciler, self.create = send, reconciler, create
        self.timeout = timeout
        self.request = create_request(create)
        self.attempts = 0
        self.sent = 0.0
        self.started: float | None = None
        """When the first attempt began (our epoch seconds): what it stored is no older."""
        self.floor: float | None = None
        """The earliest server time then, by the server clock as it was."""

    def describe(self) -> tuple[str, Mapping[str, object]]:
        """How log lines name this create, and their structured fields."""
        fields = {"method": "POST", "path": "/models", "use_case_id": self.create.use_case_id}
        return f"create {self.create.name!r}", fields

    def send(self, request: Request, number: int) -> Awaitable[Response]:
        # not a coroutine of its own: the attempt loop awaits the transport's at once
        self.sent = time.time()
        if self.started is None:
            self.started, self.floor = self.sent, self.reconciler.floor(self.sent)
        self.attempts = number
        return self._send(request, number)

    def decode(
        self, status: int, headers: Mapping[str, str], body: bytes, request: Request
    ) -> Model:
        model = decode_model(status, headers, body, request)
        self.reconciler.clock.observe(model.created_at.timestamp(), 1.0, self.sent, time.time())
        return model

    async def find(self, error: HappyRobotError) -> Model | None:
        log.info(
            "create %r: attempt %d ambiguous (%s); looking for it",
            self.create.name,
            self.attempts,
            error,
            extra={"use_case_id": self.create.use_case_id, "attempt": self.attempts},
        )
        assert self.started is not None
        settle = None
        if isinstance(error, APITimeoutError) and self.timeout is not None:
            settle = max(self.reconciler.policy.reconcile_delay, min(self.timeout, MAX_SETTLE))
        try:
            return await self.reconciler.reconcile(
                self.create, self.started, floor=self.floor, settle=settle
            )
        except HappyRobotError as lookup_error:
            log.info("create %r: could not reconcile (%s)", self.create.name, lookup_error)
            raise self.unsettled(error, self.attempts) from error

    def unsettled(self, error: HappyRobotError, attempts: int) -> HappyRobotError:
        return AmbiguousCreateError(self.create, attempts=attempts, cause=error)
