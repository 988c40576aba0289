"""Middleware that steps aside when it has nothing to do: the browser-only layers (sessions, the
session user, messages, CSRF) on bearer-token API calls, and CORS while no origin is allowed.

Under WSGI (``project.wsgi``) a bearer-token API call goes through a chain built without the
browser-only layers at all (``bearer_lane``); the ASGI entry point and the test client build one
chain, in which those layers step aside on such calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from corsheaders.conf import conf as cors_conf
from corsheaders.middleware import CorsMiddleware as _CorsMiddleware
from corsheaders.signals import check_request_enabled
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import MiddlewareNotUsed
from django.core.signals import setting_changed
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware


def is_bearer_api_call(request: HttpRequest) -> bool:
    """An API request that carries a bearer token: authenticated by the token alone.

    With such a header, DRF authenticates with the token (or refuses with 401) before any
    session could be consulted, and no API view renders messages, so sessions, the session
    user and messages are dead weight on these requests.
    """
    return is_bearer_api_environ(request.path_info, request.META)


def is_bearer_api_environ(path_info: str, environ: dict[str, Any]) -> bool:
    """The same test on a WSGI environ (``path_info`` as the request's, without ``SCRIPT_NAME``)."""
    return path_info.startswith("/api/") and environ.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "


_building_bearer_lane: ContextVar[bool] = ContextVar("building_bearer_lane", default=False)


@contextlib.contextmanager
def bearer_lane() -> Iterator[None]:
    """While a handler loads its middleware in this block, the browser-only layers leave themselves
    out of its chain (Django's ``MiddlewareNotUsed``): the chain for bearer-token API calls."""
    token = _building_bearer_lane.set(True)
    try:
        yield
    finally:
        _building_bearer_lane.reset(token)


class _LeftOutOfBearerLane:
    def __init__(self, get_response: Callable[[HttpRequest], Any], *args: Any, **kwargs: Any) -> None:
        if _building_bearer_lane.get():
            raise MiddlewareNotUsed
        super().__init__(get_response, *args, **kwargs)  # type: ignore[call-arg]


class _BrowserOnly(_LeftOutOfBearerLane):
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


class BrowserCsrfViewMiddleware(_LeftOutOfBearerLane, CsrfViewMiddleware):
    """Django's CSRF protection, left out of the bearer lane: a CSRF attack rides on credentials a
    browser adds by itself (cookies), and such a call is authenticated by a header a page on another
    origin cannot set without a CORS preflight, with sessions skipped. In a single chain it runs as
    Django's does (its ``process_view`` hook is the handler's, not the chain's)."""


class CorsMiddleware(_CorsMiddleware):
    """django-cors-headers, stepping aside while no origin is allowed (the default): then no
    answer carries CORS headers whatever the ``Origin``, so none needs ``Vary: Origin``, and a
    preflight reaches the view (which answers it as any other OPTIONS request) instead of an
    empty 200 without ``Access-Control-Allow-Origin``: a browser refuses both alike.

    Whether any origin is allowed is read from the settings once (django-cors-headers reads
    each setting through a property on every request), and again when a setting changes.
    """

    def __call__(self, request: HttpRequest) -> Any:
        if not _cors_in_use():
            return self.get_response(request)
        return super().__call__(request)


_cors_state: list[bool] = []


def _cors_in_use() -> bool:
    if not _cors_state:
        _cors_state.append(
            bool(
                cors_conf.CORS_ALLOWED_ORIGINS
                or cors_conf.CORS_ALLOW_ALL_ORIGINS
                or cors_conf.CORS_ALLOWED_ORIGIN_REGEXES
            )
        )
    # A receiver of django-cors-headers' signal may allow an origin for any request.
    return _cors_state[0] or bool(check_request_enabled.receivers)


def _forget_cors_state(*, setting: str, **_: Any) -> None:
    if setting.startswith("CORS_"):
        _cors_state.clear()


setting_changed.connect(_forget_cors_state, dispatch_uid="project-middleware-cors-state")
