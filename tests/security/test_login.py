"""Login: throttling that spelling cannot dodge, no user enumeration, throttle keys never built from raw input."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from accounts import services
from cachemgmt import cache
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login"
THROTTLE_KEY = re.compile(r"throttle:login-(user|addr):[0-9a-f]{32}")


def login(username: str, password: str, *, address: str = "10.0.0.1"):
    return APIClient().post(LOGIN, {"username": username, "password": password}, format="json", REMOTE_ADDR=address)


def test_throttling_counts_every_spelling_of_a_username_as_one(settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 5, "LOGIN_FAILURES_PER_ADDRESS": 1000}
    user = UserFactory(username="alice")
    MembershipFactory(user=user)
    # Case, surrounding (Unicode) spaces, full width letters (NFKC folds them).
    variants = ["ALICE", " alice ", "\uff41\uff4c\uff49\uff43\uff45", "\uff21lice\u3000", "\talIce\n"]
    for i, variant in enumerate(variants):  # each from another address: only the username counter can add up
        assert login(variant, "wrong", address=f"10.1.0.{i}").status_code == 401
    throttled = login("alice", PASSWORD, address="10.2.0.1")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert login("bob", "wrong", address="10.2.0.2").status_code == 401  # another username is not affected


def test_throttling_per_address_whatever_the_usernames(settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 1000, "LOGIN_FAILURES_PER_ADDRESS": 3}
    for i in range(3):
        assert login(f"nobody-{i}", "wrong", address="10.3.0.1").status_code == 401
    assert login("nobody-x", "wrong", address="10.3.0.1").status_code == 429
    assert login("nobody-x", "wrong", address="10.3.0.2").status_code == 401


def test_login_errors_do_not_tell_which_usernames_exist(counting_hasher):
    member = MembershipFactory()
    inactive = MembershipFactory().user
    services.user_set_active(user_id=inactive.pk, is_active=False)
    cases = {
        "unknown user": ("no-such-user-anywhere", PASSWORD),
        "wrong password": (member.user.username, "not the password"),
        "inactive user, right password": (inactive.username, PASSWORD),
    }
    answers = {}
    for name, (username, password) in cases.items():
        counting_hasher.computed = 0
        response = login(username, password, address=f"10.4.0.{len(answers)}")
        answers[name] = (response.status_code, response.content, response["WWW-Authenticate"], counting_hasher.computed)
    assert len({answer[:3] for answer in answers.values()}) == 1, answers  # same status, body and header
    assert answers["unknown user"][0] == 401
    # Timing: each path computes exactly one password hash (the unknown user's is a dummy one).
    assert {answer[3] for answer in answers.values()} == {1}, answers


@pytest.mark.parametrize(
    "username",
    ["a:b:c", "*", "user name with spaces", "x" * 10_000, "throttle:login-user:*", "\u202eevil", ""],
)
def test_throttle_keys_are_fixed_length_digests_of_any_input(username, monkeypatch):
    keys: list[str] = []
    real_reserve = cache.window_reserve
    monkeypatch.setattr(
        cache, "window_reserve", lambda key, *, window: (keys.append(key), real_reserve(key, window=window))[1]
    )
    with pytest.raises(services.LoginFailed):
        services.auth_login(username=username, password="wrong", client_address=f"{username}:* 10.0.0.1")
    assert len(keys) == 2 and all(THROTTLE_KEY.fullmatch(key) for key in keys), keys


@pytest.mark.services
def test_throttle_keys_in_redis_hold_no_client_input(redis_cache, settings):
    from django_redis import get_redis_connection

    settings.ACCOUNTS = {**settings.ACCOUNTS, "TRUSTED_PROXY_COUNT": 1}
    username = "evil:*:" + "y" * 140
    client = APIClient()
    client.post(LOGIN, {"username": username, "password": "p"}, format="json", HTTP_X_FORWARDED_FOR="1.2.3.4:*, ::1")
    redis = get_redis_connection("default")
    found = [key.decode() for key in redis.scan_iter(match=f"{settings.CACHEMGMT['KEY_PREFIX']}*throttle*")]
    assert len(found) == 2, found
    for key in found:
        assert THROTTLE_KEY.search(key) and "evil" not in key and "1.2.3.4" not in key and len(key) < 100


def test_lone_surrogates_are_a_client_error():
    """JSON may carry them (json.loads accepts "\\ud800"); the database could not store them."""
    body = b'{"username": "\\ud800", "password": "x"}'
    response = APIClient().post(LOGIN, body, content_type="application/json")
    assert response.status_code == 400


def test_behind_a_proxy_each_client_has_its_own_address_counter(settings):
    """With TRUSTED_PROXY_COUNT=1 the address is the one the proxy saw; a spoofed left part is ignored."""
    settings.ACCOUNTS = {
        **settings.ACCOUNTS,
        "TRUSTED_PROXY_COUNT": 1,
        "LOGIN_FAILURES_PER_USERNAME": 1000,
        "LOGIN_FAILURES_PER_ADDRESS": 2,
    }

    def attempt(forwarded: str):
        body = {"username": "nobody", "password": "wrong"}
        return APIClient().post(LOGIN, body, format="json", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded)

    assert [attempt("203.0.113.7").status_code for _ in range(3)] == [401, 401, 429]
    assert attempt("198.51.100.1").status_code == 401  # another client behind the same proxy
    assert attempt("198.51.100.99, 203.0.113.7").status_code == 429  # a forged first hop changes nothing


@pytest.mark.slow
def test_trusted_proxy_count_is_read_from_the_environment():
    import os
    import subprocess
    import sys

    from tests.support.services import ROOT

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "TRUSTED_PROXY_COUNT": "2"}
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.ACCOUNTS['TRUSTED_PROXY_COUNT'])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "2", result.stderr


def test_existing_pbkdf2_hashes_are_upgraded_to_argon2id_at_the_next_login_without_ending_tokens(settings):
    """The production hasher list (the tests' own settings use a fast hasher): an old PBKDF2 hash
    still logs in, is rehashed with Argon2id, and the rehash is not a password change."""
    from django.contrib.auth.hashers import make_password

    import project.settings as production

    settings.PASSWORD_HASHERS = production.PASSWORD_HASHERS
    user = MembershipFactory().user
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save(update_fields=["password"])
    first = login(user.username, PASSWORD)
    assert first.status_code == 200
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    token = first.json()["access_token"]
    assert APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert login(user.username, PASSWORD).status_code == 200  # the new hash checks too
