"""CORS: browser apps on listed origins may call the API with a bearer token; nobody else, never with credentials."""

from __future__ import annotations

import pytest
from django.test import Client

from project.env import EnvError, env_origins
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

APP = "https://app.example.com"


def preflight(path: str = "/api/me", origin: str = APP):
    return Client().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )


def test_no_origin_is_allowed_by_default(settings):
    assert settings.CORS_ALLOWED_ORIGINS == [] and not settings.CORS_ALLOW_ALL_ORIGINS
    response = preflight()
    assert "access-control-allow-origin" not in response.headers


def test_a_listed_origin_gets_its_preflight_and_its_answers(settings, bearer):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    response = preflight()
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert "authorization" in response.headers["access-control-allow-headers"]
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers
    user = MembershipFactory().user
    me = Client().get("/api/me", HTTP_ORIGIN=APP, **bearer(user))
    assert me.status_code == 200 and me.headers["access-control-allow-origin"] == APP
    assert "WWW-Authenticate" in me.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in preflight(origin="https://evil.example").headers


def test_star_allows_any_origin_but_never_credentials(settings):
    settings.CORS_ALLOW_ALL_ORIGINS = True
    response = preflight(origin="https://anyone.example")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


def test_the_admin_is_never_opened_to_other_origins(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    assert "access-control-allow-origin" not in preflight(path="/admin/").headers


@pytest.mark.parametrize(
    "value", ["app.example.com", "https://app.example.com/path", "ftp://x.example", "https://*.example"]
)
def test_bad_origins_stop_start_up_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", value)
    with pytest.raises(EnvError, match="CORS_ALLOWED_ORIGINS"):
        env_origins("CORS_ALLOWED_ORIGINS")


def test_origins_from_the_environment(monkeypatch):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f"{APP}/, http://localhost:3000")
    assert env_origins("CORS_ALLOWED_ORIGINS") == [APP, "http://localhost:3000"]
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "*")
    assert env_origins("CORS_ALLOWED_ORIGINS") == ["*"]


@pytest.fixture
def cors_work(monkeypatch) -> list[str]:
    """Each response django-cors-headers looked at."""
    from corsheaders.middleware import CorsMiddleware

    seen: list[str] = []
    original = CorsMiddleware.add_response_headers

    def counting(self, request, response):
        seen.append(request.path)
        return original(self, request, response)

    monkeypatch.setattr(CorsMiddleware, "add_response_headers", counting)
    return seen


def test_with_no_origin_allowed_cors_steps_aside(cors_work, bearer):
    response = Client().get("/api/me", HTTP_ORIGIN=APP, **bearer(MembershipFactory().user))
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    assert "origin" not in response.get("Vary", "").lower()  # no answer differs by Origin
    assert cors_work == []


def test_allowing_an_origin_at_run_time_brings_cors_back(settings, cors_work, bearer):
    user = MembershipFactory().user
    Client().get("/api/me", **bearer(user))
    assert cors_work == []
    settings.CORS_ALLOWED_ORIGINS = [APP]
    response = Client().get("/api/me", HTTP_ORIGIN=APP, **bearer(user))
    assert response.headers["access-control-allow-origin"] == APP
    assert "origin" in response.headers["vary"].lower()
    assert cors_work == ["/api/me"]


def test_a_receiver_of_the_cors_signal_is_honoured_with_no_origin_listed(cors_work, bearer):
    from corsheaders.signals import check_request_enabled

    def allow_app(sender, request, **kwargs):
        return request.headers.get("origin") == APP

    check_request_enabled.connect(allow_app)
    try:
        response = Client().get("/api/me", HTTP_ORIGIN=APP, **bearer(MembershipFactory().user))
    finally:
        check_request_enabled.disconnect(allow_app)
    assert response.headers["access-control-allow-origin"] == APP
    assert cors_work == ["/api/me"]
