"""Every endpoint against every kind of caller: anonymous, user, staff, superuser, inactive user, revoked token."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts import services
from accounts.tokens import token_decode
from tests.factories import PASSWORD, MembershipFactory, UserFactory
from tests.support.tokens import access_token

pytestmark = pytest.mark.django_db

CALLERS = ("anonymous", "user", "staff", "superuser", "inactive", "revoked")

# method, path, body (login sends the caller's own credentials; a bearer header is ignored there)
ENDPOINTS = {
    "login": ("post", "/api/auth/login", "credentials"),
    "logout": ("post", "/api/auth/logout", {}),
    "me": ("get", "/api/me", None),
    "cache_stats": ("get", "/api/admin/cache/stats", None),
    "cache_clear": ("post", "/api/admin/cache/clear", {"namespace": "user_context"}),
    "zones_sync": ("post", "/api/admin/zones/sync", None),
    "health": ("get", "/health", None),
    "health_live": ("get", "/health/live", None),
    "schema": ("get", "/api/schema/", None),
}

#              anonymous user staff superuser inactive revoked
EXPECTED = {
    "login":       (400, 200, 200, 200, 401, 200),
    "logout":      (401, 204, 204, 204, 401, 401),
    "me":          (401, 200, 200, 200, 401, 401),
    "cache_stats": (401, 403, 200, 200, 401, 401),
    "cache_clear": (401, 403, 200, 200, 401, 401),
    "zones_sync":  (401, 403, 202, 202, 401, 401),
    "health":      (200, 200, 200, 200, 200, 200),
    "health_live": (200, 200, 200, 200, 200, 200),
    "schema":      (200, 200, 200, 200, 200, 200),
}  # fmt: skip


def caller(kind: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, credentials) of a caller of this kind."""
    if kind == "anonymous":
        return {}, {}
    user = {
        "user": lambda: MembershipFactory().user,
        "staff": lambda: UserFactory(is_staff=True),
        "superuser": lambda: UserFactory(is_staff=True, is_superuser=True),
        "inactive": lambda: MembershipFactory().user,
        "revoked": lambda: MembershipFactory().user,
    }[kind]()
    token = access_token(user)
    if kind == "inactive":
        services.user_set_active(user_id=user.pk, is_active=False)
    if kind == "revoked":
        services.auth_logout(claims=token_decode(token))
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}, {"username": user.username, "password": PASSWORD}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("kind", CALLERS)
def test_endpoint_answers_each_caller_as_specified(endpoint, kind, settings, monkeypatch):
    from zones import services as zone_services

    monkeypatch.setattr(zone_services, "zone_sync_enqueue", lambda **_: {"status": "queued"})  # no broker traffic
    headers, credentials = caller(kind)
    method, path, body = ENDPOINTS[endpoint]
    if body == "credentials":
        body = credentials
    client = APIClient()
    response = (
        getattr(client, method)(path, body, format="json", **headers)
        if body is not None
        else getattr(client, method)(path, **headers)
    )
    expected = EXPECTED[endpoint][CALLERS.index(kind)]
    assert response.status_code == expected, (endpoint, kind, response.status_code, response.content[:300])
    if expected == 401 and endpoint != "login":
        assert response["WWW-Authenticate"].startswith("Bearer")
    if response.status_code >= 400:
        assert "detail" in response.json() or endpoint == "login"
