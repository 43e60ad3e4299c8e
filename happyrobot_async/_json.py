"""JSON for the wire: orjson when the `[speedups]` extra installed it, else the stdlib.

Both give the same values for JSON and raise `ValueError` subclasses on bad
input, so nothing else in the SDK knows which one runs. (Only outside JSON do
they differ: the stdlib reads `NaN` and `Infinity`, orjson refuses them; a
`Model` has no number field, so either way no such value reaches the caller.)
`HAPPYROBOT_NO_SPEEDUPS=1` forces the stdlib (to compare, or to rule the extra
out).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Final

__all__: list[str] = []

loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]

try:
    if os.environ.get("HAPPYROBOT_NO_SPEEDUPS"):
        raise ImportError("speedups turned off by HAPPYROBOT_NO_SPEEDUPS")
    import orjson
except ImportError:
    _compact = json.JSONEncoder(separators=(",", ":"))  # built once: dumps() would build one

    def dumps(value: Any) -> bytes:
        """Compact JSON bytes."""
        return _compact.encode(value).encode()

    loads = json.loads
    BACKEND: Final = "json"
else:
    loads = orjson.loads
    dumps = orjson.dumps
    BACKEND: Final = "orjson"  # type: ignore[misc]
