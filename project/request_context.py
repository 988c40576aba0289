"""Per-request facts shared with logs and Celery tasks: the request id and the context cache outcome."""

from __future__ import annotations

import os
import re
import threading
from contextvars import ContextVar
from typing import Any

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
TASK_HEADER = "request_id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_context_cache: ContextVar[str | None] = ContextVar("context_cache", default=None)


def request_id_from(value: str | None) -> str:
    """The caller's request id when it is a sane value, else a fresh one (ids land in logs verbatim)."""
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return _fresh_ids.next()


class _FreshIds:
    """Fresh ids: 16 bytes of the operating system's randomness each (what ``secrets.token_hex(16)``
    gives), read 256 ids at a time rather than one system call per request. A forked child starts
    afresh (``reset``), so it never hands out bytes its parent read."""

    _READ = 16 * 256

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def next(self) -> str:
        with self._lock:
            if self._at + 16 > len(self._pool):
                self._pool, self._at = os.urandom(self._READ), 0
            pool, at = self._pool, self._at
            self._at = at + 16
        return pool[at : at + 16].hex()


_fresh_ids = _FreshIds()
os.register_at_fork(after_in_child=_fresh_ids.reset)


def request_id_get() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


def context_cache_set(outcome: str) -> None:
    """Called by the context selector: ``hit`` or ``miss`` for this request's log line."""
    _context_cache.set(outcome)


def context_cache_get() -> str | None:
    return _context_cache.get()


def context_cache_reset() -> None:
    _context_cache.set(None)


# --------------------------------------------------------------------------------------
# Celery: a task logs with the id of the request that queued it.
# --------------------------------------------------------------------------------------


def _before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_id_get()
    if request_id and headers is not None and TASK_HEADER not in headers:
        headers[TASK_HEADER] = request_id


def _task_request_id(task: Any) -> str | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = getattr(request, TASK_HEADER, None)
    if not value:
        value = (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    return str(value) if value else None


# Tokens restoring what was bound before each running task (prerun and postrun share a thread).
_task_tokens: dict[str, Any] = {}


def _task_prerun(task: Any = None, task_id: str | None = None, **_: Any) -> None:
    request_id = _task_request_id(task)
    # An eager task runs inside the request that queued it: its id is already bound.
    if request_id and task_id and structlog.contextvars.get_contextvars().get("request_id") != request_id:
        _task_tokens[task_id] = structlog.contextvars.bind_contextvars(request_id=request_id)


def _task_postrun(task_id: str | None = None, **_: Any) -> None:
    tokens = _task_tokens.pop(task_id, None) if task_id else None
    if tokens:
        structlog.contextvars.reset_contextvars(**tokens)


def celery_signals_connect() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_before_task_publish, weak=False, dispatch_uid="request-context-publish")
    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="request-context-prerun")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="request-context-postrun")
