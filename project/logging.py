"""Structured logging: JSON lines or console lines through structlog, with secrets redacted."""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.processors import JSONRenderer as _JSON

REDACTED = "[redacted]"

# Names whose values are secrets: as event keys, dict keys, header names, query or form
# parameters, JSON members or ``name=value`` text (``access_token``, ``HTTP_AUTHORIZATION``,
# ``X-Api-Key``, ``csrfmiddlewaretoken``, ``sessionid``...).
_SECRET_WORDS = [
    r"pass(?:word|wd|phrase)?", "pwd", "secret", "token", "authorization", "cookie", "credential",
    r"api[_-]?key", r"private[_-]?key", r"signing[_-]?key", "sessionid", "csrf",
]  # fmt: skip
_SECRET_NAME = "|".join(_SECRET_WORDS)
_SECRET_KEYS = re.compile(_SECRET_NAME, re.I)
_NOT_SECRET_KEYS = frozenset({"token_version"})
# An authorization scheme and its credentials, anywhere in a text.
_SCHEME = re.compile(r"\b(bearer|token)(\s+)[A-Za-z0-9._~+/=-]{8,}|\b(basic)(\s+)[A-Za-z0-9+/]{6,}={0,2}", re.I)
# Credentials inside a URL: scheme://user:password@host (Redis, PostgreSQL, brokers).
_URL_CREDENTIALS = re.compile(r"(://[^/\s:@]*:)[^@\s/]+(@)")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# ``name=value``, ``name: value``, ``'name': 'value'``, ``"name": "value"``: a secret name, its
# closing quote, the separator, then a quoted value (to its closing quote) or a bare one (to
# the next delimiter of a query string, header, repr or JSON text).
_PAIR = re.compile(
    rf"""(\b[\w.-]*?(?:{_SECRET_NAME})[\w.-]*["']?\s*[:=]\s*)"""
    r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|b'(?:[^'\\]|\\.)*'|[^\s&,;'"<>)}\]]+)""",
    re.I,
)
# Every pattern above starts with one of these; most strings hold none, and one search is
# far cheaper than three substitutions.
_SUSPECT = re.compile(rf"eyJ|bearer|basic|://[^\s]*@|{_SECRET_NAME}", re.I)
# The same search on ASCII text lowered first: several times faster than case-insensitive matching.
_SUSPECT_LOWER = re.compile(rf"eyj|bearer|basic|://[^\s]*@|{_SECRET_NAME}")


def suspect(text: str) -> bool:
    """Whether ``text`` may hold a credential (``scrub_text`` has nothing to do otherwise)."""
    if text.isascii():
        return _SUSPECT_LOWER.search(text.lower()) is not None
    return _SUSPECT.search(text) is not None


def scrub_text(text: str) -> str:
    """``text`` with every credential it carries replaced by ``[redacted]``."""
    if not suspect(text):
        return text
    text = _SCHEME.sub(lambda m: (m.group(1) or m.group(3)) + (m.group(2) or m.group(4)) + REDACTED, text)
    text = _URL_CREDENTIALS.sub(r"\1" + REDACTED + r"\2", text)
    text = _PAIR.sub(lambda m: m.group(1) + REDACTED, text)
    return _JWT.sub(REDACTED, text)


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEYS.search(key)) and key not in _NOT_SECRET_KEYS


def _redact(key: Any, value: Any, depth: int = 0) -> Any:
    if isinstance(key, str) and _is_secret_key(key):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if depth < 8 and isinstance(value, dict):
        return {k: _redact(k, v, depth + 1) for k, v in value.items()}
    if depth < 8 and isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if len(items) == 2 and isinstance(items[0], str) and _is_secret_key(items[0]):
            return [items[0], REDACTED]  # a (name, value) pair, as in a list of headers
        return [_redact(None, item, depth + 1) for item in items]
    # Any other object (a request, an exception, bytes) is logged as its scrubbed repr.
    return scrub_text(repr(value))


def redact_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop values of secret-looking keys, and every credential inside any other value.

    It runs last, after tracebacks are formatted and in the formatter every handler uses,
    so no logger, argument, extra field, request repr or exception can carry a secret out.
    """
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact(key, value)
    return event_dict


FOREIGN_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


def _renderer() -> Any:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        console = getattr(settings, "LOG_FORMAT", "json") == "console"
    except ImproperlyConfigured:  # a bad setting is being reported: JSON meanwhile
        return structlog.processors.JSONRenderer()
    if console:
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


class _LazyRenderer:
    """Chooses JSON or console rendering from settings the first time it is used."""

    def __init__(self) -> None:
        self._inner: Any = None

    def inner(self) -> Any:
        if self._inner is None:
            from django.conf import settings

            chosen = _renderer()
            if settings.configured:  # decided from the settings: keep it
                self._inner = chosen
            return chosen
        return self._inner

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
        return self.inner()(logger, name, event_dict)


renderer = _LazyRenderer()

# The per-request access line: fields the request middleware passes as ``extra``.
ACCESS_LOGGER = "project.request"
_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "user_id", "context_cache", "view")


# The one formatter every handler uses (Django's LOGGING, gunicorn's logconfig_dict).
FORMATTER_CONFIG = {
    "()": "project.logging.Formatter",
    "processor": "ext://project.logging.renderer",
    "foreign_pre_chain": "ext://project.logging.FOREIGN_PRE_CHAIN",
}


class Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter with redaction as its last step, and a direct path for the access
    line in JSON mode.

    Every record of every logger reaches the handlers through this formatter: tracebacks are
    formatted into text first, then ``redact_event`` scrubs every value, then the renderer runs.

    Every request logs that line, and the generic chain (contextvars, level, name,
    timestamp, extra-copying, rendering) costs several times more than the request's
    own context lookup; the direct path builds the same JSON object in one step: the
    bound context variables through the same redaction, the line's own fields checked with
    one search for anything that looks like a credential (numbers cannot carry one).
    """

    def __init__(self, *args: Any, processor: Any = None, **kwargs: Any) -> None:
        kwargs["processors"] = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            processor or renderer,
        ]
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        if record.name == ACCESS_LOGGER and not record.exc_info:
            line = self.access_json(record.getMessage(), record.levelname, record.created, record.__dict__)
            if line is not None:
                return line
        return str(super().format(record))

    def access_json(self, message: str, levelname: str, created: float, fields: Mapping[str, Any]) -> str | None:
        """The access line as JSON, the same object the generic chain renders (None in console
        mode: the generic chain renders it)."""
        if not isinstance(renderer.inner(), _JSON):
            return None
        event: dict[str, Any] = {"event": message}
        for key, value in structlog.contextvars.get_contextvars().items():
            event[key] = (
                value
                if value.__class__ is str and not suspect(value) and not _is_secret_key(key)
                else _redact(key, value)
            )
        event["level"] = levelname.lower()
        event["logger"] = ACCESS_LOGGER
        event["timestamp"] = _iso_utc(created)
        texts = [message]
        for name in _ACCESS_FIELDS:
            value = fields.get(name)
            if value.__class__ in _PLAIN:
                event[name] = value
                if value.__class__ is str:
                    texts.append(value)
            else:  # any other object: the generic redaction (its repr may hide what JSON writes)
                event[name] = _redact(name, value)
        if suspect("\n".join(texts)):
            event["event"] = scrub_text(message)
            for name in _ACCESS_FIELDS:
                event[name] = _redact(name, event[name])
        return _encode(event)


def access_line_write(logger: logging.Logger, level: int, message: str, fields: dict[str, Any], exc_info: Any) -> None:
    """Log the access line. With logging configured as the project configures it (one stream
    handler with this module's formatter on the root, nothing in between), the line is written
    to that stream directly: the same text, without building a ``LogRecord`` and walking the
    logger hierarchy for each request. Levels and ``logging.disable`` apply as to any record; any
    other configuration (another handler, a filter, a handler level above the line, console
    rendering) and any line with a traceback go through ``logging`` as usual, and an error while
    rendering or writing is reported by the handler's ``handleError`` as ``emit`` reports it."""
    if not logger.isEnabledFor(level):
        return
    handler = None if exc_info else _sole_stream_handler(logger, level)
    if handler is None:
        logger.log(level, message, exc_info=exc_info, extra=fields)
        return
    formatter: Formatter = handler.formatter  # type: ignore[assignment]
    try:
        line = formatter.access_json(message, logging.getLevelName(level), time.time(), fields)
        if line is None:  # console rendering: the generic chain
            logger.log(level, message, extra=fields)
            return
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        finally:
            handler.release()
    except RecursionError:
        raise
    except Exception:  # noqa: BLE001 - as StreamHandler.emit: reported by handleError, the request goes on
        handler.handleError(logger.makeRecord(logger.name, level, "(unknown file)", 0, message, (), None, extra=fields))


def _sole_stream_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[Any] | None:
    """The root's one ``StreamHandler`` with this module's formatter, when a record of ``logger``
    at ``level`` would reach it and nothing else (no handler or filter on the way)."""
    current: Any = logger
    root = logging.root
    while current is not root:
        if current is None or current.handlers or current.filters or not current.propagate:
            return None
        current = current.parent
    if root.filters or len(root.handlers) != 1:
        return None
    handler = root.handlers[0]
    if (
        handler.__class__ is not logging.StreamHandler
        or handler.filters
        or level < handler.level
        or handler.formatter.__class__ is not Formatter
    ):
        return None
    return handler  # type: ignore[return-value]


_ENCODER = json.JSONEncoder(default=repr)
# The same encoder made once: ``JSONEncoder.encode`` builds it again for every call. No cycle
# check: every object written here is built above, flat or from ``_redact`` (depth-bounded).
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # not in the type stubs
_C_ENCODER = (
    _make_c_encoder(None, repr, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    if _make_c_encoder is not None
    else None
)


def _encode(event: dict[str, Any]) -> str:
    if _C_ENCODER is None:
        return _ENCODER.encode(event)
    return "".join(_C_ENCODER(event, 0))


# Values the direct path writes as they are once the credential check passed.
_PLAIN = frozenset({str, int, float, bool, type(None)})
# (second, its text): one tuple replaced as a whole, so threads formatting at once (the access
# line is rendered outside the handler's lock) never pair one second with another's text.
_second: tuple[int, str] = (-1, "")


def _iso_utc(created: float) -> str:
    """``created`` as structlog's ISO timestamp (``2026-12-03T09:30:01.123456Z``), the date and time
    formatted once per second."""
    global _second
    whole = int(created)
    cached = _second
    if cached[0] == whole:
        text = cached[1]
    else:
        text = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    micros = int((created - whole) * 1_000_000)
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


# Nothing renders where a call was made from, nor the thread or process: records skip finding
# them. This is process-wide (Python's documented optimisation): every record, of any library,
# carries no file, line, function, thread or process, and ``stack_info`` / ``stacklevel`` have no
# effect.
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False
logging.captureWarnings(True)
