"""Structured logging: JSON lines or console lines through structlog, with secrets redacted."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.processors import JSONRenderer as _JSON

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|cookie|credential|api[_-]?key", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


# Both patterns above start with one of these; most strings contain neither, and one search
# is far cheaper than two substitutions.
_SUSPECT = re.compile(r"eyJ|bearer", re.I)


def _scrub_text(text: str) -> str:
    if not _SUSPECT.search(text):
        return text
    return _JWT.sub(REDACTED, _BEARER.sub(r"\1" + REDACTED, text))


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEYS.search(key)) and key != "token_version"


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop values of secret-looking keys and any bearer token or JWT inside strings."""
    for key, value in list(event_dict.items()):
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _scrub_text(value)
    return event_dict


FOREIGN_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
    redact_secrets,
]


def _renderer() -> Any:
    from django.conf import settings

    if getattr(settings, "LOG_FORMAT", "json") == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


class _LazyRenderer:
    """Chooses JSON or console rendering from settings the first time it is used."""

    def __init__(self) -> None:
        self._inner: Any = None

    def inner(self) -> Any:
        if self._inner is None:
            self._inner = _renderer()
        return self._inner

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
        return self.inner()(logger, name, event_dict)


renderer = _LazyRenderer()

# The per-request access line: fields the request middleware passes as ``extra``.
ACCESS_LOGGER = "project.request"
_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "user_id", "context_cache", "view")


class Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with a direct path for the access line in JSON mode.

    Every request logs that line, and the generic chain (contextvars, level, name,
    timestamp, extra-copying, rendering) costs several times more than the request's
    own context lookup; the direct path builds the same JSON object in one step, through
    the same redaction.
    """

    def format(self, record: logging.LogRecord) -> str:
        if record.name != ACCESS_LOGGER or record.exc_info or not isinstance(renderer.inner(), _JSON):
            return str(super().format(record))
        event: dict[str, Any] = {"event": record.getMessage(), **structlog.contextvars.get_contextvars()}
        event["level"] = record.levelname.lower()
        event["logger"] = record.name
        event["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat().replace("+00:00", "Z")
        for name in _ACCESS_FIELDS:
            event[name] = getattr(record, name, None)
        redact_secrets(None, "", event)
        return json.dumps(event, default=repr)


logging.captureWarnings(True)
