"""Signed, expiring access tokens naming their user, session and token version (HS256 JWT, key id in the header).

Keys rotate without logging anyone out: ``TOKEN_SIGNING_KEYS`` lists ``(id, secret)`` pairs,
the first signs and every one verifies, so an operator adds a new key first, then retires the
old one once the tokens it signed have expired (or at once, which ends them). Without it,
one key is derived from ``SECRET_KEY``, and one more from each of ``SECRET_KEY_FALLBACKS``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

import jwt
from django.conf import settings
from django.core.signals import setting_changed

from accounts.conf import accounts_settings

ALGORITHM = "HS256"
ISSUER = "authctx"
_REQUIRED = ["exp", "iat", "sub", "jti", "tv", "sid", "iss"]
_SESSION_ID_MAX = 64


class TokenError(Exception):
    """A token that must be refused; the message is safe to show to the client."""

    def __init__(self, message: str, code: str = "token_invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    token_version: int
    session_id: str
    jti: str
    issued_at: int
    expires_at: int


def _derived_key(secret_key: str) -> bytes:
    # A key derived for this purpose only, so a token can never double as another signed value.
    return hmac.new(secret_key.encode(), b"accounts.access-token.v1", hashlib.sha256).digest()


@functools.cache
def signing_keys() -> tuple[tuple[str, bytes], ...]:
    """``(key id, key)`` pairs: the first signs, every one verifies."""
    configured = tuple(accounts_settings.TOKEN_SIGNING_KEYS)
    if configured:
        return tuple((key_id, secret.encode()) for key_id, secret in configured)
    keys = []
    for secret_key in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        key = _derived_key(secret_key)
        # The id names the key without revealing anything about it.
        keys.append(("sk-" + hashlib.sha256(b"key-id:" + key).hexdigest()[:12], key))
    return tuple(keys)


def token_issue(
    *, user_id: int, token_version: int, session_id: str, now: float | None = None, not_after: float | None = None
) -> tuple[str, TokenClaims]:
    """A signed access token for a session; it expires after ACCESS_TOKEN_TTL, never after ``not_after``."""
    issued = int(now if now is not None else time.time())
    expires = issued + int(accounts_settings.ACCESS_TOKEN_TTL)
    if not_after is not None:
        expires = max(issued + 1, min(expires, int(not_after)))
    claims = TokenClaims(
        user_id=user_id,
        token_version=token_version,
        session_id=str(session_id),
        jti=secrets.token_urlsafe(16),
        issued_at=issued,
        expires_at=expires,
    )
    payload = {
        "sub": str(user_id),
        "tv": token_version,
        "sid": claims.session_id,
        "jti": claims.jti,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "iss": ISSUER,
    }
    key_id, key = signing_keys()[0]
    return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": key_id}), claims


# Tokens this process has verified, by their exact text: a bearer sends the same token on
# every request, and HMAC verification plus claim parsing is the largest CPU cost of a warm
# request after the cache lookup. Only tokens that passed every check get in; expiry and
# issue time are checked again on each use; revocation is checked against the context.
_VERIFIED_MAX = 10_000
_verified: dict[str, TokenClaims] = {}
_verified_lock = threading.Lock()


def _forget_verified(*, setting: str, **_: object) -> None:
    if setting in {"SECRET_KEY", "SECRET_KEY_FALLBACKS", "ACCOUNTS"}:
        signing_keys.cache_clear()
        with _verified_lock:
            _verified.clear()


setting_changed.connect(_forget_verified)


def token_decode(token: str, *, now: float | None = None) -> TokenClaims:
    """Verify signature, algorithm, expiry and shape; raise TokenError otherwise."""
    current = now if now is not None else time.time()
    known = _verified.get(token)
    if known is not None:
        _check_times(known.issued_at, known.expires_at, current)
        return known
    claims = _verify(token, current)
    with _verified_lock:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.pop(next(iter(_verified)))  # oldest first
        _verified[token] = claims
    return claims


def _check_times(iat: int, exp: int, current: float) -> None:
    if iat > current + int(accounts_settings.TOKEN_CLOCK_SKEW):
        raise TokenError("Invalid token.")
    if exp <= current:
        raise TokenError("Token has expired.", code="token_expired")


def _verify(token: str, current: float) -> TokenClaims:
    if not token or len(token) > int(accounts_settings.MAX_TOKEN_LENGTH) or token.count(".") != 2:
        raise TokenError("Malformed token.")
    try:
        key_id = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise TokenError("Invalid token.") from None
    key = next((key for known, key in signing_keys() if known == key_id), None)
    if key is None:  # never issued here, or signed with a retired key
        raise TokenError("Invalid token.")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": _REQUIRED, "verify_iat": False, "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise TokenError("Invalid token.") from None
    sub, tv, sid, jti = claims["sub"], claims["tv"], claims["sid"], claims["jti"]
    iat, exp = claims["iat"], claims["exp"]
    # isdigit() alone admits "²" (int() refuses it) and "١٢" (another spelling of 12).
    if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) <= 18):
        raise TokenError("Invalid token.")
    if not (isinstance(tv, int) and not isinstance(tv, bool) and tv >= 0):
        raise TokenError("Invalid token.")
    if not (isinstance(jti, str) and 0 < len(jti) <= 64):
        raise TokenError("Invalid token.")
    if not (isinstance(sid, str) and 0 < len(sid) <= _SESSION_ID_MAX):
        raise TokenError("Invalid token.")
    if not (isinstance(iat, int) and isinstance(exp, int)):
        raise TokenError("Invalid token.")
    _check_times(iat, exp, current)
    return TokenClaims(user_id=int(sub), token_version=tv, session_id=sid, jti=jti, issued_at=iat, expires_at=exp)
