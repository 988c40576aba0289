"""One structured log line and one latency observation per request, under a request id; and the
browser-only middleware, which bearer-token API calls skip."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import structlog
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from cachemgmt.counters import stats_flusher_start
from project import request_context
from project.metrics import request_observe

logger = logging.getLogger("project.request")


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
            request_observe(view=view, status=response.status_code, seconds=seconds)
            logger.log(
                logging.ERROR if response.status_code >= 500 else logging.INFO,
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 2),
                    "user_id": _user_id(request),
                    "context_cache": request_context.context_cache_get(),
                    "view": view,
                },
            )
            return response
        finally:
            request_context.context_cache_reset()
            structlog.contextvars.reset_contextvars(**tokens)


def is_bearer_api_call(request: HttpRequest) -> bool:
    """An API request that carries a bearer token: authenticated by the token alone.

    With such a header, DRF authenticates with the token (or refuses with 401) before any
    session could be consulted, and no API view renders messages, so sessions, the session
    user and messages are dead weight on these requests.
    """
    return request.path_info.startswith("/api/") and request.META.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "


class _BrowserOnly:
    get_response: Callable[[HttpRequest], Any]

    def __call__(self, request: HttpRequest) -> Any:
        if is_bearer_api_call(request):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class BrowserSessionMiddleware(_BrowserOnly, SessionMiddleware):
    """Django's session middleware, except on bearer-token API calls."""


class BrowserAuthenticationMiddleware(_BrowserOnly, AuthenticationMiddleware):
    """Django's session user (``request.user``), except on bearer-token API calls."""


class BrowserMessageMiddleware(_BrowserOnly, MessageMiddleware):
    """Django's messages, except on bearer-token API calls."""
