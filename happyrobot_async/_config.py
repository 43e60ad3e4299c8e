"""A client's settings, checked before anything is sent: each bad one is named, no key echoed."""

from __future__ import annotations

import ipaddress
import os
from typing import Final
from urllib.parse import urlsplit

from .errors import InvalidRequestError

__all__ = ["DEFAULT_BASE_URL"]

DEFAULT_BASE_URL: Final = "https://app.happyrobot.ai/api/v1"


def api_key_from(value: str | None) -> str:
    """The key given, else `HAPPYROBOT_API_KEY`; refused if missing or not a header value."""
    key = value if value is not None else os.environ.get("HAPPYROBOT_API_KEY")
    if not key:
        raise InvalidRequestError("api_key", "no API key: pass api_key= or set HAPPYROBOT_API_KEY")
    if not isinstance(key, str):
        raise InvalidRequestError("api_key", f"must be a string, not {type(key).__name__}")
    if not key.strip():
        raise InvalidRequestError("api_key", "is only whitespace")
    _header_safe("api_key", key)
    return key


def _header_safe(field: str, value: str) -> None:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise InvalidRequestError(field, "contains a control character (a stray newline?)")
    if value != value.strip():
        raise InvalidRequestError(field, "has leading or trailing whitespace")


def organization_id_from(value: object) -> str | None:
    """An organization id to send as `x-organization-id`: a clean, non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError("organization_id", "must be a non-empty string")
    _header_safe("organization_id", value)
    return value


def base_url_from(value: str | None) -> str:
    """The URL given, else `HAPPYROBOT_BASE_URL`, else the public API; checked, no trailing /.

    Refused: anything but http(s), user info (`user:pass@`), a port that is not
    a number in 1-65535, and plain http to anything but this machine (the key
    would travel in clear).
    """
    url = value or os.environ.get("HAPPYROBOT_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(url, str):
        raise InvalidRequestError("base_url", f"must be a string, not {type(url).__name__}")
    _header_safe("base_url", url)
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequestError("base_url", f"must be an http(s) URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequestError(
            "base_url", "must not carry user info (user:password@); pass the key as api_key"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise InvalidRequestError("base_url", "has a port that is not a number in 1-65535")
    if parts.query or parts.fragment:
        raise InvalidRequestError("base_url", "must not have a query or a fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidRequestError(
            "base_url",
            "plain http is only allowed to a loopback host; the key would travel in clear",
        )
    return url.rstrip("/")


def check_count(field: str, value: object, floor: int) -> None:
    """A whole number (not a bool) of at least `floor`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < floor:
        raise InvalidRequestError(field, f"must be a whole number >= {floor}, got {value!r}")


def check_positive(field: str, value: object, unit: str = "seconds") -> None:
    """A positive number (int or float, not a bool or a string)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not value > 0
        or value == float("inf")
    ):
        raise InvalidRequestError(field, f"must be a positive number of {unit}, got {value!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
