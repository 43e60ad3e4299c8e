"""`simulate --fault KIND:RATE[:ROUTE][:K=V...]`: parse the option into a `Fault`, and its help.

Both read the simulator's own lists of fault kinds and routes, so they import
it; they run only for `simulate` (the help only when it is shown), and no
other command loads `happyrobot_async.testing`.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..testing import Fault

__all__: list[str] = []

#: The `simulate` epilog as given to argparse: `FaultHelpFormatter` puts the fault help there.
FAULT_HELP = "{fault help}"


class FaultHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Writes the fault help only when help is shown, so building the parser imports nothing."""

    def add_text(self, text: str | None) -> None:
        super().add_text(fault_help() if text == FAULT_HELP else text)


def fault_help() -> str:
    """The `--fault` syntax: kinds, routes, parameters, examples (the help's epilog)."""
    from ..testing._faults import FAULT_KINDS, ROUTES

    def paragraph(text: str) -> str:
        return textwrap.fill(text, width=78, subsequent_indent="  ")

    return "\n".join(
        [
            paragraph(f"fault kinds: {', '.join(FAULT_KINDS)}"),
            paragraph(f"fault routes: {', '.join(ROUTES)} (no route: every API route)"),
            paragraph(
                "fault parameters: delay=S, retry_after=S|none, status=N, html=true, "
                "then=drop|500|504, location=URL, body=JSON, size=BYTES, model_id=ID "
                "(only GET /models/ID)"
            ),
            "examples: --fault drop:0.2  --fault hang:1:get  --fault hang:1:model_id=ID",
            "  --fault client_error:0.1:get:status=403  --fault oversize:1:list:size=5000000",
        ]
    )


_PARAM_TYPES: dict[str, Callable[[str], Any]] = {
    "delay": float,
    "retry_after": lambda text: None if text.lower() == "none" else float(text),
    "status": int,
    "html": lambda text: text.lower() in ("1", "true", "yes"),
    "then": lambda text: text if text == "drop" else int(text),
    "location": str,
    "body": json.loads,
    "size": int,
    "model_id": str,
}


def parse_fault(text: str) -> Fault:
    """Parse `KIND:RATE[:ROUTE][:K=V...]` (a value may itself contain colons, like a URL).

    Kinds and routes are checked against the simulator's own lists; every refusal
    is one line naming the valid values.
    """
    from ..testing import Fault
    from ..testing._faults import FAULT_KINDS as KINDS
    from ..testing._faults import ROUTES as ROUTE_NAMES

    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    try:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
        rate = _rate(parts.pop(0)) if parts else 1.0
        route: str | None = None
        params: dict[str, str] = {}
        last: str | None = None
        for part in parts:
            key, equals, value = part.partition("=")
            if equals and key in _PARAM_TYPES:
                last, params[key] = key, value
            elif last is None and route is None and part in ROUTE_NAMES:
                route = part
            elif last is not None:
                params[last] += ":" + part
            else:
                raise ValueError(_unexpected(part, ROUTE_NAMES))
        return Fault(kind, rate, route, **_convert(params))  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"bad fault {text!r}: {error}") from None


def _rate(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"the rate must be a number within 0..1, got {text!r}") from None


def _unexpected(part: str, routes: tuple[str, ...]) -> str:
    key, equals, _ = part.partition("=")
    if equals:
        return f"unknown parameter {key!r} (parameters: {', '.join(_PARAM_TYPES)})"
    if part in routes:
        return f"route {part!r}: one route at most, right after the rate"
    return f"unknown route {part!r} (routes: {', '.join(routes)})"


def _convert(params: dict[str, str]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in params.items():
        try:
            converted[key] = _PARAM_TYPES[key](value)
        except ValueError as error:
            raise ValueError(f"{key}={value!r}: {error}") from None
    return converted
