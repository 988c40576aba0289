"""One structured access log line and one latency observation per request, under a request id.

It is the only line a failed request writes: Django's own ``django.request`` lines (a warning
per 4xx, an error per 5xx) are off in the settings, and a 5xx's traceback is carried here.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from cachemgmt.counters import stats_flusher_start
from cachemgmt.metrics import request_observe
from project import request_context
from project.logging import ACCESS_LOGGER, access_line_write

logger = logging.getLogger(ACCESS_LOGGER)


def _user_id(request: HttpRequest) -> int | None:
    """The authenticated user's id, without loading a session user nobody asked for."""
    user: Any = request.__dict__.get("user")
    if user is None:
        return None
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None
    if not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "pk", None)


_EXCEPTION_ATTR = "_authctx_exception"


def _remember_exception(sender: Any, request: HttpRequest | None = None, **_: Any) -> None:
    """Keep an unhandled exception for the request's one log line (``got_request_exception``)."""
    if request is not None:
        request.__dict__[_EXCEPTION_ATTR] = sys.exc_info()


got_request_exception.connect(_remember_exception, dispatch_uid="cachemgmt-access-log-exception")


class RequestLogMiddleware:
    """Binds ``request_id`` (a sane ``X-Request-ID`` or a fresh one) for every log line of the request,
    echoes it in the response, and logs method, path (never the query string), status, duration,
    user and whether the user context came from the cache."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        stats_flusher_start()
        started = time.perf_counter()
        request_id = request_context.request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        request_context.context_cache_reset()
        try:
            response = self.get_response(request)
            seconds = time.perf_counter() - started
            response[request_context.REQUEST_ID_HEADER] = request_id
            match = request.resolver_match
            view = match.view_name if match is not None else "unmatched"
            request_observe(method=request.method or "", view=view, status=response.status_code, seconds=seconds)
            access_line_write(
                logger,
                logging.ERROR if response.status_code >= 500 else logging.INFO,
                "request",
                {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 2),
                    "user_id": _user_id(request),
                    "context_cache": request_context.context_cache_get(),
                    "view": view,
                },
                # A server error's traceback rides on this line (django.request stays quiet).
                request.__dict__.pop(_EXCEPTION_ATTR, None),
            )
            return response
        finally:
            request_context.context_cache_reset()
            structlog.contextvars.reset_contextvars(**tokens)
