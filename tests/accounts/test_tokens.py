"""Bearer tokens: verified once per process, but expiry and key changes still apply."""

from __future__ import annotations

import jwt
import pytest

from accounts import tokens
from accounts.tokens import TokenError, token_decode, token_issue


def test_a_verified_token_is_reused_but_still_expires(monkeypatch):
    token, claims = token_issue(user_id=7, token_version=2, session_id="s1")
    assert token_decode(token) == claims
    verifications: list[str] = []
    real_verify = tokens._verify
    monkeypatch.setattr(tokens, "_verify", lambda t, now: (verifications.append(t), real_verify(t, now))[1])
    assert token_decode(token) == claims
    assert verifications == []  # served from the process's verified tokens
    with pytest.raises(TokenError, match="expired"):
        token_decode(token, now=claims.expires_at)


def test_a_token_that_fails_verification_is_never_remembered(monkeypatch):
    token, _ = token_issue(user_id=7, token_version=2, session_id="s1")
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for _ in range(2):
        with pytest.raises(TokenError):
            token_decode(tampered)
    assert tampered not in tokens._verified


def test_changing_the_secret_key_forgets_verified_tokens(settings):
    token, claims = token_issue(user_id=7, token_version=2, session_id="s1")
    assert token_decode(token) == claims
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789abcdefghij"
    with pytest.raises(TokenError):
        token_decode(token)


def test_the_verified_set_is_bounded(monkeypatch):
    monkeypatch.setattr(tokens, "_VERIFIED_MAX", 5)
    tokens._verified.clear()
    for user_id in range(12):
        token, _ = token_issue(user_id=user_id, token_version=0, session_id="s1")
        token_decode(token)
    assert len(tokens._verified) <= 5


# --------------------------------------------------------------------------------------
# Key rotation
# --------------------------------------------------------------------------------------

OLD = ("2026-01", "o" * 40)
NEW = ("2026-06", "n" * 40)


def signing(settings, *keys: tuple[str, str]) -> None:
    settings.ACCOUNTS = {**settings.ACCOUNTS, "TOKEN_SIGNING_KEYS": keys}


def test_a_new_signing_key_signs_while_the_old_one_still_verifies_until_retired(settings):
    signing(settings, OLD)
    old_token, old_claims = token_issue(user_id=7, token_version=0, session_id="s1")
    signing(settings, NEW, OLD)  # rotation: the new key first
    assert token_decode(old_token) == old_claims  # nobody is logged out
    new_token, new_claims = token_issue(user_id=7, token_version=0, session_id="s1")
    assert jwt.get_unverified_header(new_token)["kid"] == NEW[0]
    signing(settings, NEW)  # the old key retired: what it signed ends
    with pytest.raises(TokenError):
        token_decode(old_token)
    assert token_decode(new_token) == new_claims


def test_secret_key_rotation_keeps_tokens_through_its_fallbacks(settings):
    settings.SECRET_KEY = "first-secret-key-for-rotation-0123456789abcdefghijkl"
    token, claims = token_issue(user_id=7, token_version=0, session_id="s1")
    settings.SECRET_KEY = "second-secret-key-for-rotation-0123456789abcdefghijk"
    settings.SECRET_KEY_FALLBACKS = ["first-secret-key-for-rotation-0123456789abcdefghijkl"]
    assert token_decode(token) == claims
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(TokenError):
        token_decode(token)


def test_a_key_id_never_reveals_its_key(settings):
    signing(settings)  # derived from SECRET_KEY
    key_id, key = tokens.signing_keys()[0]
    assert key_id.startswith("sk-") and settings.SECRET_KEY not in key_id and key.hex()[:12] not in key_id


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nocolon", "id:secret pairs"),
        ("bad id!:" + "x" * 40, "id:secret pairs"),
        ("k1:short", "shorter than 32"),
        ("k1:" + "x" * 40 + ",k1:" + "y" * 40, "appears twice"),
    ],
)
def test_bad_signing_keys_stop_start_up_naming_the_variable(monkeypatch, value, message):
    from project.env import EnvError, env_signing_keys

    monkeypatch.setenv("TOKEN_SIGNING_KEYS", value)
    with pytest.raises(EnvError, match=f"TOKEN_SIGNING_KEYS: .*{message}") as raised:
        env_signing_keys("TOKEN_SIGNING_KEYS")
    assert "x" * 40 not in str(raised.value) and "y" * 40 not in str(raised.value)  # no secret in the message


def test_signing_keys_from_the_environment(monkeypatch):
    from project.env import env_signing_keys

    monkeypatch.setenv("TOKEN_SIGNING_KEYS", f"{NEW[0]}:{NEW[1]}, {OLD[0]}:{OLD[1]}")
    assert env_signing_keys("TOKEN_SIGNING_KEYS") == (NEW, OLD)
