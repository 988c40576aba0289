"""Typed access to the environment: the only place settings read os.environ."""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured


class EnvError(ImproperlyConfigured):
    """A configuration variable has a bad value; the message names the variable."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise EnvError(f"{name}: expected a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise EnvError(f"{name}: expected an integer, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise EnvError(f"{name}: expected an integer {bound}, got {number}")
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    assert value is not None
    if value not in choices:
        raise EnvError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    value = env_str(name, default) or ""
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, schemes: tuple[str, ...], default: str | None = None) -> str | None:
    """A URL whose scheme is one of ``schemes``; malformed values stop start-up."""
    value = env_str(name, default)
    if value is None:
        return None
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise EnvError(f"{name}: malformed URL ({exc})") from None
    if parsed.scheme not in schemes:
        raise EnvError(f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
    if parsed.scheme not in {"sqlite"} and not parsed.hostname:
        raise EnvError(f"{name}: malformed URL (no host)")
    return value


def env_networks(name: str, default: str) -> list[str]:
    """Comma-separated addresses or networks (``10.0.0.0/8``, ``::1``), or ``*`` for any."""
    items = env_list(name, default)
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise EnvError(f"{name}: expected addresses or networks (10.0.0.0/8, ::1) or *, got {item!r}") from None
    return items


_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
MIN_SIGNING_SECRET = 32


def env_signing_keys(name: str) -> tuple[tuple[str, str], ...]:
    """``id:secret,id:secret``: distinct ids, secrets of at least 32 characters; empty when unset."""
    keys: list[tuple[str, str]] = []
    for item in env_list(name, ""):
        key_id, sep, secret = item.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise EnvError(f"{name}: expected id:secret pairs (id of letters, digits, '.', '_' or '-'), got {key_id!r}")
        if len(secret) < MIN_SIGNING_SECRET:
            raise EnvError(f"{name}: the secret of key {key_id!r} is shorter than {MIN_SIGNING_SECRET} characters")
        if any(key_id == known for known, _ in keys):
            raise EnvError(f"{name}: key id {key_id!r} appears twice")
        keys.append((key_id, secret))
    return tuple(keys)


def env_hostports(name: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (Sentinels); empty when unset."""
    pairs: list[tuple[str, int]] = []
    for item in env_list(name, ""):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise EnvError(f"{name}: expected host:port pairs separated by commas, got {item!r}")
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def env_origins(name: str) -> list[str]:
    """``scheme://host[:port],…`` (browser origins, no path), or ``*`` alone; empty when unset."""
    origins = env_list(name, "")
    if origins == ["*"]:
        return origins
    for origin in origins:
        parsed = urlparse(origin)
        if (
            parsed.scheme not in {"http", "https"}
            or not parsed.hostname
            or parsed.path not in {"", "/"}
            or "*" in origin
        ):
            raise EnvError(f"{name}: expected origins like https://app.example.com (or * alone), got {origin!r}")
    # Browsers send scheme and host in lower case: so is what they are compared with.
    return [f"{urlparse(o).scheme}://{urlparse(o).netloc.lower()}" for o in origins]
