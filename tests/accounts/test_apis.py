"""Login, logout and /api/me: the contract's answers, revocation, throttling and bad input."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from django.db import connection

from accounts import services
from accounts.models import Session, User
from accounts.tokens import signing_keys, token_decode
from tests.factories import PASSWORD, MembershipFactory, RoleFactory, UserFactory
from tests.support.tokens import access_token

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "/api/auth/login"
LOGOUT = "/api/auth/logout"
ME = "/api/me"


def login(client, username: str, password: str = PASSWORD, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, format="json", **extra)


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def member():
    return MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))


def test_login_returns_token_and_contract_context(api_client, member):
    response = login(api_client, member.user.username)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in", "session_id", "context"
    }  # fmt: skip
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_expires_in"] == 2_592_000
    assert response["Cache-Control"] == "no-store"
    assert body["context"]["user"]["username"] == member.user.username
    assert body["context"]["permissions"] == ["zones.view_zone"]
    me = api_client.get(ME, **auth(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == body["context"]


def test_warm_me_does_no_sql_and_cold_me_does_one_statement(api_client, member, django_assert_num_queries):
    token = login(api_client, member.user.username).json()["access_token"]
    with django_assert_num_queries(0):
        assert api_client.get(ME, **auth(token)).status_code == 200
    from cachemgmt import cache

    cache.namespace_clear("user_context")
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        assert api_client.get(ME, **auth(token)).status_code == 200
    with django_assert_num_queries(0):
        assert api_client.get(ME, **auth(token)).status_code == 200


def test_me_reflects_changes_on_the_next_request(api_client, member, bearer):
    headers = bearer(member.user)
    assert api_client.get(ME, **headers).json()["permissions"] == ["zones.view_zone"]
    member.role.permissions.clear()
    assert api_client.get(ME, **headers).json()["permissions"] == []
    services.profile_update(user_id=member.user_id, display_name="Changed")
    assert api_client.get(ME, **headers).json()["user"]["display_name"] == "Changed"
    services.membership_deactivate(user_id=member.user_id)
    body = api_client.get(ME, **headers).json()
    assert body["organization"] is None and body["role"] is None


def test_logout_revokes_that_token_only(api_client, member):
    first = login(api_client, member.user.username).json()["access_token"]
    second = login(api_client, member.user.username).json()["access_token"]
    assert api_client.post(LOGOUT, **auth(first)).status_code == 204
    revoked = api_client.get(ME, **auth(first))
    assert revoked.status_code == 401
    assert revoked.headers["WWW-Authenticate"].startswith("Bearer")
    assert api_client.get(ME, **auth(second)).status_code == 200
    ended = Session.objects.filter(user=member.user, ended_at__isnull=False)
    assert list(ended.values_list("end_reason", flat=True)) == ["logout"]


def test_logout_all_revokes_every_token(api_client, member):
    tokens = [login(api_client, member.user.username).json()["access_token"] for _ in range(3)]
    assert api_client.post(LOGOUT, {"all": True}, format="json", **auth(tokens[0])).status_code == 204
    for token in tokens:
        assert api_client.get(ME, **auth(token)).status_code == 401
    fresh = login(api_client, member.user.username).json()["access_token"]
    assert api_client.get(ME, **auth(fresh)).status_code == 200


@pytest.mark.parametrize(
    "revoke",
    [
        pytest.param(lambda u: services.user_set_active(user_id=u.pk, is_active=False), id="deactivated"),
        pytest.param(lambda u: services.user_set_password(user_id=u.pk, password="n3w-passw0rd!"), id="password"),
        pytest.param(lambda u: u.delete(), id="deleted"),
        pytest.param(lambda u: (setattr(u, "is_active", False), u.save()), id="deactivated-orm"),
    ],
)
def test_tokens_stop_working_at_once(api_client, member, bearer, revoke):
    headers = bearer(member.user)
    assert api_client.get(ME, **headers).status_code == 200
    revoke(User.objects.get(pk=member.user_id))
    response = api_client.get(ME, **headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_password_and_unknown_user_get_the_same_401(api_client, member):
    wrong = login(api_client, member.user.username, "not the password")
    unknown = login(api_client, "nobody-here", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_inactive_user_cannot_log_in(api_client, member):
    services.user_set_active(user_id=member.user_id, is_active=False)
    response = login(api_client, member.user.username)
    assert response.status_code == 401
    assert response.json() == login(api_client, "nobody", "x").json()


def test_failed_logins_are_throttled_per_username_regardless_of_case_and_space(api_client, member, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 3, "LOGIN_FAILURES_PER_ADDRESS": 100}
    name = member.user.username
    for variant in [name, name.upper(), f"  {name} "]:
        assert login(api_client, variant, "bad").status_code == 401
    throttled = login(api_client, name.title(), PASSWORD)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    # The right password does not get through while throttled either.
    assert login(api_client, name, PASSWORD).status_code == 429
    # Another user is unaffected.
    other = UserFactory()
    assert login(api_client, other.username).status_code == 200


def test_failed_logins_are_throttled_per_client_address(api_client, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 100, "LOGIN_FAILURES_PER_ADDRESS": 4}
    for i in range(4):
        assert login(api_client, f"guess{i}", "bad", REMOTE_ADDR="10.1.1.1").status_code == 401
    assert login(api_client, "guess9", "bad", REMOTE_ADDR="10.1.1.1").status_code == 429
    user = UserFactory()
    assert login(api_client, user.username, REMOTE_ADDR="10.1.1.2").status_code == 200


# --------------------------------------------------------------------------------------
# Bad input: always a 4xx, never a 5xx, and nothing written.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("", "application/json"),
        ("[]", "application/json"),
        ('"string"', "application/json"),
        ('{"username": 5, "password": []}', "application/json"),
        ('{"username": null, "password": null}', "application/json"),
        ('{"username": "", "password": ""}', "application/json"),
        ('{"username": "   ", "password": "x"}', "application/json"),
        ('{"username": "a\\u0000b", "password": "x"}', "application/json"),
        ('{"username": "alice"}', "application/json"),
        ('{"username": "' + "a" * 5000 + '", "password": "x"}', "application/json"),
        ('{"username": "alice", "password": "' + "p" * 5000 + '"}', "application/json"),
        ("username=alice&password=x", "application/x-www-form-urlencoded"),
        ("\xff\xfe garbage", "application/json"),
    ],
)
def test_malformed_login_bodies_get_4xx(api_client, body, content_type):
    users_before = User.objects.count()
    response = api_client.generic("POST", LOGIN, body.encode("utf-8", "surrogateescape"), content_type=content_type)
    assert 400 <= response.status_code < 500, response.content
    assert "detail" in response.json() or response.json()
    assert User.objects.count() == users_before


def test_huge_body_is_refused_with_413(api_client):
    body = json.dumps({"username": "alice", "password": "x" * (2 * 1024 * 1024)})
    response = api_client.generic("POST", LOGIN, body, content_type="application/json")
    assert response.status_code == 413


def _forge(claims: dict, key: bytes | str = b"", alg: str = "HS256") -> str:
    kid, current = signing_keys()[0]
    return jwt.encode(claims, key or current, algorithm=alg, headers={"kid": kid})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens(user: User) -> dict[str, str]:
    now = int(time.time())
    valid = access_token(user)
    sid = token_decode(valid).session_id
    good = {"sub": str(user.pk), "tv": user.token_version, "sid": sid, "jti": "abc", "iat": now, "exp": now + 600,
            "iss": "authctx"}  # fmt: skip
    header, _, signature = valid.split(".")
    tampered_payload = _b64({**good, "sub": str(user.pk + 1)})
    return {
        "empty": "",
        "garbage": "garbage",
        "two-parts": "abc.def",
        "four-parts": "a.b.c.d",
        "bad-base64": "!!!.@@@.###",
        "alg-none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(good) + ".",
        "other-key": _forge(good, key=b"another-secret-key-of-enough-length-123456"),
        "secret-key-itself": _forge(good, key="test-secret-key-not-for-production-0123456789abcdef"),
        "hs512": _forge(good, alg="HS512"),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "truncated-signature": valid[:-5],
        "expired": _forge({**good, "iat": now - 7200, "exp": now - 3600}),
        "future-iat": _forge({**good, "iat": now + 3600, "exp": now + 7200}),
        "missing-exp": _forge({k: v for k, v in good.items() if k != "exp"}),
        "missing-tv": _forge({k: v for k, v in good.items() if k != "tv"}),
        "wrong-issuer": _forge({**good, "iss": "someone-else"}),
        "sub-not-numeric": _forge({**good, "sub": "admin"}),
        "sub-int": _forge({**good, "sub": user.pk}),
        "sub-huge": _forge({**good, "sub": "9" * 40}),
        "tv-string": _forge({**good, "tv": "0"}),
        "tv-bool": _forge({**good, "tv": False}),
        "stale-token-version": _forge({**good, "tv": user.token_version + 1}),
        "unknown-user": _forge({**good, "sub": "999999999"}),
        "unknown-session": _forge({**good, "sid": "00000000-0000-0000-0000-000000000000"}),
        "missing-sid": _forge({k: v for k, v in good.items() if k != "sid"}),
        "huge": "a" * 100_000,
        "unicode": "ü.ö.ä",
    }


def test_every_bad_token_gets_401_with_bearer_challenge(api_client, member):
    for name, token in _bad_tokens(member.user).items():
        response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 401, (name, response.status_code, response.content)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert "detail" in response.json()


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer a b", "bearer  ", "Basic dXNlcjpwYXNz", "Token abc", "", "Bearer\x00abc"],
)
def test_malformed_authorization_headers_get_401(api_client, header):
    response = api_client.get(ME, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_token_gets_401(api_client):
    response = api_client.get(ME)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("body", ['{"all": "maybe"}', "[1,2]", "{bad json", '{"all": {"x": 1}}'])
def test_logout_with_bad_body_gets_400_and_revokes_nothing(api_client, member, bearer, body):
    headers = bearer(member.user)
    response = api_client.generic("POST", LOGOUT, body, content_type="application/json", **headers)
    assert response.status_code == 400
    assert not Session.objects.filter(ended_at__isnull=False).exists()
    assert api_client.get(ME, **headers).status_code == 200


def test_logout_without_token_is_401(api_client):
    assert api_client.post(LOGOUT).status_code == 401


def test_wrong_methods_get_405(api_client, member, bearer):
    assert api_client.get(LOGIN).status_code == 405
    assert api_client.post(ME, **bearer(member.user)).status_code == 405


def test_me_body_is_rendered_once_per_context_and_matches_drfs_rendering(api_client, member, monkeypatch):
    from rest_framework.renderers import JSONRenderer

    token = login(api_client, member.user.username).json()["access_token"]
    renders: list[object] = []
    original = JSONRenderer.render

    def counting(self, data, accepted_media_type=None, renderer_context=None):
        renders.append(data)
        return original(self, data, accepted_media_type, renderer_context)

    monkeypatch.setattr(JSONRenderer, "render", counting)
    plain = [api_client.get(ME, **auth(token)) for _ in range(3)]
    # Rendered by DRF with a parameter asked for: the same object, indented.
    indented = api_client.get(ME, HTTP_ACCEPT="application/json; indent=2", **auth(token))
    assert all(r.status_code == 200 for r in [*plain, indented])
    assert len({r.content for r in plain}) == 1
    assert plain[0].content == original(JSONRenderer(), indented.json())
    assert b"\n  " in indented.content and indented.json() == plain[0].json()
    # Once for the plain answers (the context's first), once for the indented one.
    assert len(renders) == 2
    for header in ("Content-Type", "Cache-Control", "Allow", "X-Request-ID", "X-Frame-Options"):
        assert plain[0].has_header(header) and indented.has_header(header)
    assert plain[0]["Content-Type"] == "application/json" and plain[0]["Cache-Control"] == "no-store"


def test_a_changed_context_gets_its_own_body(api_client, member):
    token = login(api_client, member.user.username).json()["access_token"]
    before = api_client.get(ME, **auth(token)).json()
    services.role_set_permissions(role_id=member.role.pk, permission_codes=[])
    after = api_client.get(ME, **auth(token)).json()
    assert before["permissions"] == ["zones.view_zone"] and after["permissions"] == []
    assert before["version"] != after["version"]
