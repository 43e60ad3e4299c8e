"""What a request answered, and where a `with_raw_response` call finds it.

`Response` is the transport's answer, fully read. A raw call sets a
`ResponseSink` in its task's context once; the transport (and a reconcile that
adopts a model) notes each response there, so the call can hand back the last.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import NamedTuple

__all__: list[str] = []


class Response(NamedTuple):
    """An HTTP response, fully read; `elapsed`: seconds from sending to the last byte."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float = 0.0


class ResponseSink:
    """Where a `with_raw_response` call keeps the last response read for it."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: Response | None = None


#: The sink of the `with_raw_response` call running in this task's context, if any. Set once
#: per raw call, not once per response: setting a context variable on every response of
#: every call cost ~10 µs per request with hundreds of tasks in flight.
response_sink: ContextVar[ResponseSink | None] = ContextVar("response_sink", default=None)


def keep_response(response: Response) -> None:
    """Note `response` as the last one read, for a raw call in progress (else nothing)."""
    sink = response_sink.get()
    if sink is not None:
        sink.last = response


def last_response() -> Response | None:
    """The last response noted for the raw call in progress (None outside one)."""
    sink = response_sink.get()
    return None if sink is None else sink.last
