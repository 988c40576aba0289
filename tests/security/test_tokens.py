"""Forged, altered, expired and oversized bearer tokens are refused with a 401, never more."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.tokens import ISSUER, TokenError, signing_keys, token_decode
from tests.factories import MembershipFactory
from tests.support.tokens import access_token

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(user, **overrides) -> dict:
    now = int(time.time())
    claims = {"sub": str(user.pk), "tv": user.token_version, "sid": "forged-session", "jti": "forged-jti",
              "iat": now, "exp": now + 600, "iss": ISSUER}  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not ...}


def signed(claims: dict, *, key: bytes | None = None, algorithm: str = "HS256", kid: str | None = "current") -> str:
    current_kid, current_key = signing_keys()[0]
    headers = {} if kid is None else {"kid": current_kid if kid == "current" else kid}
    return jwt.encode(claims, key if key is not None else current_key, algorithm=algorithm, headers=headers)


def edited(token: str, **changes) -> str:
    """The same signature over a payload with some claims changed."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    return f"{header}.{b64(json.dumps(data).encode())}.{signature}"


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")

FORGERIES = {
    "alg none": lambda u: jwt.encode(claims_for(u), None, algorithm="none"),
    "alg none, hand-made": lambda u: b64(b'{"alg":"none"}') + "." + b64(json.dumps(claims_for(u)).encode()) + ".",
    "another key": lambda u: signed(claims_for(u), key=b"another-key-entirely-0123456789abcdef"),
    "the raw SECRET_KEY": lambda u: signed(claims_for(u), key=settings.SECRET_KEY.encode()),
    "HS512 with the right key": lambda u: signed(claims_for(u), algorithm="HS512"),
    "edited subject": lambda u: edited(access_token(u), sub=str(u.pk + 1)),
    "edited token version": lambda u: edited(access_token(u), tv=7),
    "edited session": lambda u: edited(access_token(u), sid="another-session"),
    "edited expiry": lambda u: edited(access_token(u, now=time.time() - 7200), exp=int(time.time()) + 600),
    "expired": lambda u: access_token(u, now=time.time() - 7200),
    "no key id": lambda u: signed(claims_for(u), kid=None),
    "an unknown key id": lambda u: signed(claims_for(u), kid="retired-key"),
    "no session": lambda u: signed(claims_for(u, sid=...)),
    "session id not a string": lambda u: signed(claims_for(u, sid=5)),
    "issued in the future": lambda u: signed(claims_for(u, iat=int(time.time()) + 3600)),
    "another issuer": lambda u: signed(claims_for(u, iss="someone-else")),
    "no expiry": lambda u: signed(claims_for(u, exp=...)),
    "subject not a number": lambda u: signed(claims_for(u, sub="admin")),
    "subject an integer": lambda u: signed(claims_for(u, sub=u.pk)),
    "subject in other digits": lambda u: signed(claims_for(u, sub="²")),
    "subject in Arabic-Indic digits": lambda u: signed(claims_for(u, sub=str(u.pk).translate(ARABIC_INDIC))),
    "token version a boolean": lambda u: signed(claims_for(u, tv=False)),
    "token version negative": lambda u: signed(claims_for(u, tv=-1)),
    "expiry a float": lambda u: signed(claims_for(u, exp=time.time() + 600)),
    "empty jti": lambda u: signed(claims_for(u, jti="")),
    "huge": lambda u: signed(claims_for(u, pad="x" * 10_000)),
    "two dots only": lambda u: "..",
    "not base64": lambda u: "a*b.c*d.e*f",
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_token_is_refused(forgery):
    user = MembershipFactory().user
    token = FORGERIES[forgery](user)
    with pytest.raises(TokenError):
        token_decode(token)
    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith('Bearer realm="api", error="invalid_token"')
    assert set(response.json()) == {"detail", "code"}
    assert response.json()["code"] in {"token_invalid", "token_expired", "token_revoked"}


def test_the_genuine_token_is_accepted():
    """The forgeries above fail for what they change, not because the harness is broken."""
    user = MembershipFactory().user
    assert token_decode(signed(claims_for(user))).user_id == user.pk
    genuine = access_token(user)
    assert APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {genuine}").status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer a b", "Bearer " + "x" * 100_000, "Bearer \x00", "Basic dXNlcjpwYXNz", "Token abc"],
)
def test_malformed_authorization_header_is_not_a_server_error(header):
    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
