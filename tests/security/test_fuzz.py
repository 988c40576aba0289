"""Fuzzing: token parsing only ever refuses with TokenError, and request bodies never cause a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accounts.tokens import TokenClaims, TokenError, signing_keys, token_decode
from tests.factories import UserFactory
from tests.support.tokens import access_token

CASES: Counter[str] = Counter()
FUZZ = dict(deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
CLAIMS = ("sub", "tv", "sid", "jti", "iat", "exp", "iss", "nbf", "aud")
digits = st.text(alphabet="0123456789\u00b2\u0661\u0662", max_size=20)  # with superscript and Arabic-Indic
claim_values = st.one_of(json_values, st.integers(min_value=-(2**70), max_value=2**70), digits)
NOW = 2_000_000_000  # tokens are decoded "at" NOW - 60: iat/exp below are plausible around it


def near(valid, *odd):
    """A valid claim value most of the time, an odd one otherwise (so every later check is reached)."""
    return st.integers(0, 3).flatmap(lambda n: st.just(valid) if n else st.one_of(*odd, claim_values))


near_valid_claims = st.fixed_dictionaries(
    {
        "sub": near("42", digits),
        "tv": near(0),
        "sid": near("session"),
        "jti": near("jti"),
        "iat": near(NOW - 120),
        "exp": near(NOW + 600),
        "iss": near("authctx"),
    },
    optional={"nbf": claim_values},
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwt_shaped(draw) -> str:
    if draw(st.integers(0, 3)) > 0:
        # Three in four: a well-formed token signed with the right key, its claims near valid,
        # so the checks behind the signature are what gets fuzzed.
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signing_keys()[0][0]}).encode())
        body = b64(json.dumps(draw(near_valid_claims)).encode())
        signature = b64(hmac.new(signing_keys()[0][1], f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{signature}"
    header = draw(
        st.one_of(
            st.fixed_dictionaries(
                {"alg": st.sampled_from(["HS256", "none", "HS512", "RS256", "ES256", ""])},
                optional={"kid": st.one_of(st.just(signing_keys()[0][0]), json_values)},
            ),
            st.dictionaries(st.text(max_size=8), json_values, max_size=4),
            json_values,
        )
    )
    payload = draw(
        st.one_of(near_valid_claims, st.dictionaries(st.sampled_from(CLAIMS), claim_values, max_size=8), json_values)
    )
    head = b64(json.dumps(header).encode()) if draw(st.booleans()) else draw(st.text(max_size=30))
    body = b64(json.dumps(payload).encode()) if draw(st.booleans()) else draw(st.text(max_size=60))
    signing = draw(st.sampled_from(["right key", "random", "empty"]))
    if signing == "right key":  # so the claim checks behind the signature get fuzzed too
        signature = b64(hmac.new(signing_keys()[0][1], f"{head}.{body}".encode(), hashlib.sha256).digest())
    elif signing == "random":
        signature = b64(draw(st.binary(max_size=40)))
    else:
        signature = ""
    return f"{head}.{body}.{signature}"


def decode_or_refuse(token: str) -> None:
    try:
        claims = token_decode(token, now=NOW - 60)
    except TokenError:
        return
    assert isinstance(claims, TokenClaims) and claims.user_id >= 0


@settings(max_examples=1000, **FUZZ)
@given(st.text(max_size=300))
def test_token_decode_refuses_arbitrary_text_with_token_error_only(text):
    CASES["token_decode(text)"] += 1
    decode_or_refuse(text)


@settings(max_examples=1000, **FUZZ)
@given(jwt_shaped())
def test_token_decode_refuses_jwt_shaped_strings_with_token_error_only(token):
    CASES["token_decode(jwt-shaped)"] += 1
    decode_or_refuse(token)


# -- request bodies ------------------------------------------------------------------------------

bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"username": json_values, "password": json_values}),
    st.fixed_dictionaries({"all": json_values}),
    st.fixed_dictionaries(
        {"namespace": st.sampled_from(["user_context", "zones", "all", "x"]), "user_id": json_values}
    ),
).map(lambda value: json.dumps(value).encode())
raw_bodies = st.binary(max_size=200)


@pytest.mark.django_db
@settings(max_examples=200, **FUZZ)
@given(body=st.one_of(bodies, raw_bodies), endpoint=st.sampled_from(["login", "logout", "clear"]))
def test_request_bodies_never_cause_a_server_error(body, endpoint, django_user_model, monkeypatch):
    staff = UserFactory(is_staff=True)
    token = access_token(staff)
    path = {"login": "/api/auth/login", "logout": "/api/auth/logout", "clear": "/api/admin/cache/clear"}[endpoint]
    client = APIClient(raise_request_exception=False)
    response = client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    CASES[f"POST {path}"] += 1
    assert response.status_code < 500, (body, response.status_code, response.content[:300])


def test_report_fuzz_case_counts(hardening_report):
    """Runs last in this module: the number of cases each fuzz test ran."""
    hardening_report(**{name: count for name, count in sorted(CASES.items())}, total=sum(CASES.values()))
