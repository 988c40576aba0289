"""Signed, expiring bearer tokens carrying the user's token version (HS256 JWT)."""

from __future__ import annotations

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
_REQUIRED = ["exp", "iat", "sub", "jti", "tv", "iss"]


class TokenError(Exception):
    """A token that must be refused; the message is safe to show to the client."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    token_version: int
    jti: str
    issued_at: int
    expires_at: int


def _signing_key() -> bytes:
    # A key derived for this purpose only, so a token can never double as another signed value.
    return hmac.new(settings.SECRET_KEY.encode(), b"accounts.access-token.v1", hashlib.sha256).digest()


def token_issue(*, user_id: int, token_version: int, now: float | None = None) -> tuple[str, TokenClaims]:
    issued = int(now if now is not None else time.time())
    claims = TokenClaims(
        user_id=user_id,
        token_version=token_version,
        jti=secrets.token_urlsafe(16),
        issued_at=issued,
        expires_at=issued + int(accounts_settings.ACCESS_TOKEN_TTL),
    )
    payload = {
        "sub": str(user_id),
        "tv": token_version,
        "jti": claims.jti,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "iss": ISSUER,
    }
    return jwt.encode(payload, _signing_key(), algorithm=ALGORITHM), claims


# Tokens this process has verified, by their exact text: a bearer sends the same token on
# every request, and HMAC verification plus claim parsing is the largest CPU cost of a warm
# request after the cache lookup. Only tokens that passed every check get in; expiry and
# issue time are checked again on each use; revocation is checked against the context.
_VERIFIED_MAX = 10_000
_verified: dict[str, TokenClaims] = {}
_verified_lock = threading.Lock()


def _forget_verified(*, setting: str, **_: object) -> None:
    if setting in {"SECRET_KEY", "ACCOUNTS"}:
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
        raise TokenError("Token has expired.")


def _verify(token: str, current: float) -> TokenClaims:
    if not token or len(token) > int(accounts_settings.MAX_TOKEN_LENGTH) or token.count(".") != 2:
        raise TokenError("Malformed token.")
    try:
        claims = jwt.decode(
            token,
            _signing_key(),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": _REQUIRED, "verify_iat": False, "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise TokenError("Invalid token.") from None
    sub, tv, jti, iat, exp = claims["sub"], claims["tv"], claims["jti"], claims["iat"], claims["exp"]
    # isdigit() alone admits "²" (int() refuses it) and "١٢" (another spelling of 12).
    if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) <= 18):
        raise TokenError("Invalid token.")
    if not (isinstance(tv, int) and not isinstance(tv, bool) and tv >= 0):
        raise TokenError("Invalid token.")
    if not (isinstance(jti, str) and 0 < len(jti) <= 64):
        raise TokenError("Invalid token.")
    if not (isinstance(iat, int) and isinstance(exp, int)):
        raise TokenError("Invalid token.")
    _check_times(iat, exp, current)
    return TokenClaims(user_id=int(sub), token_version=tv, jti=jti, issued_at=iat, expires_at=exp)
