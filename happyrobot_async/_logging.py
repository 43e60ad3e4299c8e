"""The package's logger: silent unless the application configures logging or asks by env.

The `happyrobot_async` logger has a `NullHandler`, so an application that
configures no logging sees nothing (not even warnings through Python's
last-resort handler). `HAPPYROBOT_LOG=debug` or `=info` adds a stderr handler,
as `OPENAI_LOG` does. Records carry structured fields through `extra=`
(`FIELDS`), for handlers that format them (e.g. the CLI's `--log-format json`).
No WARNING is logged for an error that is also raised to the caller.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Final

__all__: list[str] = []

log: Final = logging.getLogger("happyrobot_async")
log.addHandler(logging.NullHandler())

#: The structured fields a record may carry (each only where it applies).
FIELDS: Final = (
    "method",
    "path",
    "status",
    "attempt",
    "elapsed",
    "model_id",
    "use_case_id",
    "job_key",
)
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}


def setup_from_env(environ: Mapping[str, str] = os.environ) -> logging.Handler | None:
    """Add a stderr handler at the level `HAPPYROBOT_LOG` names, if it names one."""
    level = _LEVELS.get(environ.get("HAPPYROBOT_LOG", "").strip().lower())
    if level is None:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    return handler


setup_from_env()
