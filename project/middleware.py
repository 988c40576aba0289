"""The browser-only middleware: sessions, the session user and messages, which bearer-token API calls skip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest


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
