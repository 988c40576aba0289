"""The WSGI application: bearer-token API calls through a chain without the browser-only layers,
everything else through the whole chain, with the same answers either way."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.middleware.csrf import CsrfViewMiddleware
from django.test import RequestFactory

from project.handler import LaneWSGIHandler
from project.middleware import (
    BrowserAuthenticationMiddleware,
    BrowserMessageMiddleware,
    BrowserSessionMiddleware,
)
from tests.factories import UserFactory
from tests.support.services import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """The handlers run here as a server runs them, except that they leave the test's database
    connection (inside its transaction) open, as Django's test client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


BROWSER_ONLY = (
    BrowserSessionMiddleware,
    CsrfViewMiddleware,
    BrowserAuthenticationMiddleware,
    BrowserMessageMiddleware,
)


@pytest.fixture
def entered() -> Iterator[list[str]]:
    """The names of the browser-only middleware a request entered, in order."""
    seen: list[str] = []
    patches = []
    for cls in BROWSER_ONLY:
        original = cls.__call__

        def spy(self: Any, request: Any, _original: Callable[..., Any] = original, _name: str = cls.__name__) -> Any:
            seen.append(_name)
            return _original(self, request)

        patches.append(mock.patch.object(cls, "__call__", spy))
    for patch in patches:
        patch.start()
    yield seen
    for patch in patches:
        patch.stop()


def call(app: Any, path: str, **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ = RequestFactory().get(path, **headers).environ
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"] = status
        answer["headers"] = response_headers
        return lambda data: None

    response = app(environ, start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()
    headers_seen: dict[str, str] = {}
    for name, value in answer["headers"]:
        headers_seen[name] = f"{headers_seen[name]}, {value}" if name in headers_seen else value
    return answer["status"], headers_seen, body


def comparable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in {"X-Request-ID"}}


def test_a_bearer_api_call_enters_no_browser_only_middleware_and_gets_the_same_answer(bearer, entered):
    user = UserFactory()
    app = LaneWSGIHandler()
    status, headers, body = call(app, "/api/me", **bearer(user))
    assert entered == []
    assert status.startswith("200")
    assert json.loads(body)["user"]["id"] == user.pk
    # The whole chain (in which those layers step aside) answers alike.
    full_status, full_headers, full_body = call(WSGIHandler(), "/api/me", **bearer(user))
    assert entered == [cls.__name__ for cls in BROWSER_ONLY]
    assert (full_status, comparable(full_headers), full_body) == (status, comparable(headers), body)
    assert headers["X-Request-ID"] and headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_refused_bearer_api_call_is_refused_alike(entered):
    app = LaneWSGIHandler()
    status, headers, body = call(app, "/api/me", HTTP_AUTHORIZATION="Bearer not.a.token")
    assert status.startswith("401") and entered == []
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert call(WSGIHandler(), "/api/me", HTTP_AUTHORIZATION="Bearer not.a.token")[2] == body


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/admin/login/", {"HTTP_AUTHORIZATION": "Bearer x.y.z"}),  # not an API path
        ("/api/me", {}),  # no bearer token: a session may authenticate it
        ("/api/me", {"HTTP_AUTHORIZATION": "Token abc"}),
    ],
)
def test_every_other_request_goes_through_the_whole_chain(path, headers, entered):
    status, response_headers, _ = call(LaneWSGIHandler(), path, **headers)
    assert entered == [cls.__name__ for cls in BROWSER_ONLY]
    if path == "/admin/login/":  # CSRF ran: the login form's cookie is set
        assert status.startswith("200") and "csrftoken=" in response_headers.get("Set-Cookie", "")


def test_building_the_shorter_chain_leaves_the_setting_as_it_was(settings):
    before = list(settings.MIDDLEWARE)
    LaneWSGIHandler()
    assert list(settings.MIDDLEWARE) == before
    assert "django.middleware.csrf.CsrfViewMiddleware" in before  # check --deploy looks for it by name


def test_the_chain_is_chosen_on_the_path_without_the_script_name(bearer):
    user = UserFactory()
    app = LaneWSGIHandler()
    environ = RequestFactory().get("/api/me", **bearer(user)).environ
    assert app.handler_for(environ) is app.bearer
    mounted = dict(environ, SCRIPT_NAME="/svc", PATH_INFO="/api/me")
    assert app.handler_for(mounted) is app.bearer
    assert app.handler_for(dict(environ, PATH_INFO="/apix/me")) is app.full


@pytest.mark.slow
def test_the_served_application_is_the_lane_handler_with_the_startup_objects_frozen():
    script = (
        "import gc, project.wsgi as w; "
        "print(type(w.application).__name__, gc.get_freeze_count() > 10000, gc.isenabled())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["LaneWSGIHandler", "True", "True"]
