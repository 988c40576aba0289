"""The WSGI application: two middleware chains, one for bearer-token API calls.

A bearer-token API call (``project.middleware.is_bearer_api_call``) is authenticated by its
header alone, so sessions, the session user, messages and CSRF have nothing to do on it. In
one chain they would still be entered on every such call, each to step aside; here that call
goes through a chain built without them, chosen from the WSGI environ before Django builds the
request. Every other request goes through the whole ``MIDDLEWARE`` chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.utils.module_loading import import_string

from project.middleware import is_bearer_api_environ, left_out_of_bearer_lane


class _BearerLaneHandler(WSGIHandler):
    """Django's handler with the middleware that bearer-token API calls do not need left out."""

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from the setting: it names the shorter list while the chain is
        # built (once, at start-up, before any request), then the whole list again.
        every = list(settings.MIDDLEWARE)
        settings.MIDDLEWARE = [path for path in every if not left_out_of_bearer_lane(import_string(path))]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = every


class LaneWSGIHandler:
    """A WSGI callable routing each request to one of two Django ``WSGIHandler``s (made after
    ``django.setup()``, as Django's ``get_wsgi_application`` makes its one)."""

    def __init__(self) -> None:
        self.full = WSGIHandler()
        self.bearer: WSGIHandler = _BearerLaneHandler()

    def handler_for(self, environ: dict[str, Any]) -> WSGIHandler:
        # The raw PATH_INFO: Django's decoding of it (``get_path_info``) cannot change whether it
        # starts with the ASCII "/api/", and the request object decodes it again anyway.
        if is_bearer_api_environ(environ.get("PATH_INFO", ""), environ):
            return self.bearer
        return self.full

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self.handler_for(environ)(environ, start_response)
