"""Middleware that steps aside when it has nothing to do: the browser-only layers (sessions, the
session user, messages) on bearer-token API calls, and CORS while no origin is allowed.

Under WSGI (``project.handler``) a bearer-token API call goes through a chain built without
them at all (``left_out_of_bearer_lane``); the ASGI entry point and the test client build one
chain, in which sessions, the session user and messages step aside on such calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corsheaders.conf import conf as cors_conf
from corsheaders.middleware import CorsMiddleware as _CorsMiddleware
from corsheaders.signals import check_request_enabled
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
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


def left_out_of_bearer_lane(middleware: type) -> bool:
    """Whether a middleware class has nothing to do on a bearer-token API call: the browser-only
    layers above, and Django's CSRF protection (a CSRF attack rides on credentials a browser adds
    by itself, cookies, while such a call is authenticated by a header that a page on another
    origin cannot set without a CORS preflight, and sessions are skipped on it)."""
    return issubclass(middleware, _BrowserOnly | CsrfViewMiddleware)


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
