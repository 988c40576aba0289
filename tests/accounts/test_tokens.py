"""Bearer tokens: verified once per process, but expiry and key changes still apply."""

from __future__ import annotations

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
