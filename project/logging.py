"""Structured logging: JSON lines or console lines through structlog, with secrets redacted."""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|cookie|credential|api[_-]?key", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


def _scrub_text(text: str) -> str:
    return _JWT.sub(REDACTED, _BEARER.sub(r"\1" + REDACTED, text))


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop values of secret-looking keys and any bearer token or JWT inside strings."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key) and key not in {"token_version"}:
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

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if self._inner is None:
            self._inner = _renderer()
        return self._inner(logger, name, event_dict)


renderer = _LazyRenderer()


def configure() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


logging.captureWarnings(True)
