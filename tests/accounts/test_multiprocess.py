"""Two server processes sharing PostgreSQL and Redis: a write is seen by the next request anywhere,
including by a process serving the context from its near cache."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from accounts import services
from tests.factories import PASSWORD, MembershipFactory, RoleFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


def call(base: str, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else {}


@pytest.fixture
def two_servers(postgres, redis_cache, web_process):
    return web_process(), web_process()


def test_changes_are_seen_at_once_through_another_process(two_servers):
    a, b = two_servers
    member = MembershipFactory(role=RoleFactory(perms=["zones.view_zone", "accounts.view_role"]))
    staff = UserFactory(is_staff=True)
    status, body = call(a.url, "POST", "/api/auth/login", body={"username": member.user.username, "password": PASSWORD})
    assert status == 200
    token = body["access_token"]
    for server in (a, b):  # both processes have read the context often enough to serve it near
        for _ in range(5):
            assert call(server.url, "GET", "/api/me", token)[1]["permissions"] == [
                "accounts.view_role",
                "zones.view_zone",
            ]
    staff_token = call(a.url, "POST", "/api/auth/login", body={"username": staff.username, "password": PASSWORD})[1][
        "access_token"
    ]
    stats = call(a.url, "GET", "/api/admin/cache/stats", staff_token)[1]["namespaces"]["user_context"]
    assert stats["near_hits"] >= 2  # copies were in use when the writes below happened

    member.role.permissions.remove(member.role.permissions.get(codename="view_role"))
    assert call(b.url, "GET", "/api/me", token)[1]["permissions"] == ["zones.view_zone"]
    assert call(a.url, "GET", "/api/me", token)[1]["permissions"] == ["zones.view_zone"]

    services.profile_update(user_id=member.user_id, display_name="Seen Everywhere")
    assert call(a.url, "GET", "/api/me", token)[1]["user"]["display_name"] == "Seen Everywhere"
    assert call(b.url, "GET", "/api/me", token)[1]["user"]["display_name"] == "Seen Everywhere"

    services.membership_deactivate(user_id=member.user_id)
    assert call(b.url, "GET", "/api/me", token)[1]["organization"] is None
    assert call(a.url, "GET", "/api/me", token)[1]["role"] is None

    services.user_set_active(user_id=member.user_id, is_active=False)
    assert call(a.url, "GET", "/api/me", token)[0] == 401
    assert call(b.url, "GET", "/api/me", token)[0] == 401


def test_logout_through_one_process_revokes_on_the_other(two_servers):
    a, b = two_servers
    member = MembershipFactory()
    login = {"username": member.user.username, "password": PASSWORD}
    token = call(a.url, "POST", "/api/auth/login", body=login)[1]["access_token"]
    other = call(b.url, "POST", "/api/auth/login", body=login)[1]["access_token"]
    assert call(b.url, "GET", "/api/me", token)[0] == 200
    assert call(a.url, "POST", "/api/auth/logout", token)[0] == 204
    assert call(b.url, "GET", "/api/me", token)[0] == 401
    assert call(b.url, "GET", "/api/me", other)[0] == 200
    assert call(b.url, "POST", "/api/auth/logout", other, body={"all": True})[0] == 204
    assert call(a.url, "GET", "/api/me", other)[0] == 401


@pytest.fixture
def two_servers_without_leeway(postgres, redis_cache, web_process):
    return web_process(REFRESH_REUSE_LEEWAY="0"), web_process(REFRESH_REUSE_LEEWAY="0")


def test_a_reused_refresh_token_ends_the_session_on_every_process(two_servers_without_leeway):
    a, b = two_servers_without_leeway
    member = MembershipFactory()
    login = {"username": member.user.username, "password": PASSWORD}
    first = call(a.url, "POST", "/api/auth/login", body=login)[1]
    status, second = call(a.url, "POST", "/api/auth/refresh", body={"refresh_token": first["refresh_token"]})
    assert status == 200
    for server in (a, b):  # both processes serve the session's access tokens from their caches
        for token in (first["access_token"], second["access_token"]):
            assert call(server.url, "GET", "/api/me", token)[0] == 200
    # The retired token comes back (a thief, or the client after a thief): the session ends.
    status, body = call(b.url, "POST", "/api/auth/refresh", body={"refresh_token": first["refresh_token"]})
    assert (status, body["code"]) == (401, "refresh_reused")
    for server in (a, b):
        for token in (first["access_token"], second["access_token"]):
            status, body = call(server.url, "GET", "/api/me", token)
            assert (status, body["code"]) == (401, "token_revoked")
    status, body = call(a.url, "POST", "/api/auth/refresh", body={"refresh_token": second["refresh_token"]})
    assert (status, body["code"]) == (401, "refresh_invalid")
