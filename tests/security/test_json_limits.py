"""Deeply nested or oversized JSON is a 4xx on every JSON endpoint, never a parser crash."""

from __future__ import annotations

import io

import pytest
from rest_framework.test import APIClient

from project.parsers import JSONParser, PayloadTooLarge
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NESTED_ARRAYS = b"[" * 10_000 + b"]" * 10_000
NESTED_OBJECTS = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


@pytest.mark.parametrize("body", [NESTED_ARRAYS, NESTED_OBJECTS], ids=["arrays", "objects"])
@pytest.mark.parametrize(
    ("path", "caller"),
    [("/api/auth/login", None), ("/api/auth/logout", "user"), ("/api/admin/cache/clear", "staff")],
)
def test_deep_nesting_is_a_400_on_every_json_endpoint(path, caller, body, bearer):
    headers = {} if caller is None else bearer(UserFactory(is_staff=caller == "staff"))
    response = APIClient().post(path, body, content_type="application/json", **headers)
    assert response.status_code == 400, response.content[:500]
    assert "nested deeper than" in response.json()["detail"]


def test_nesting_within_the_limit_is_parsed_as_usual():
    body = b'{"username": "u", "password": "p", "extra": ' + b"[" * 20 + b"]" * 20 + b"}"
    response = APIClient().post("/api/auth/login", body, content_type="application/json")
    assert response.status_code == 401  # parsed, checked, refused for its credentials


def test_brackets_inside_strings_do_not_count():
    body = b'{"username": "' + b"[" * 5000 + b'", "password": "p"}'
    response = APIClient().post("/api/auth/login", body, content_type="application/json")
    assert response.status_code == 400  # the username is too long, a field error rather than a depth one
    assert "username" in response.json()


def test_the_parser_holds_any_stream_to_the_size_limit(settings):
    """Defence in depth behind the Content-Length check: a stream longer than the limit is a 413."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = b'{"username": "' + b"a" * 4096 + b'", "password": "p"}'
    with pytest.raises(PayloadTooLarge) as refused:
        JSONParser().parse(io.BytesIO(body), "application/json", {})
    assert refused.value.status_code == 413


@pytest.mark.parametrize("charset", ["cp037", "utf-16", "latin-1"])
def test_a_body_in_another_charset_is_a_400(charset):
    """JSON is UTF-8; another charset could hide brackets from the depth check (cp037 does)."""
    body = ("[" * 5000 + "]" * 5000).encode(charset)
    response = APIClient().post("/api/auth/login", body, content_type=f"application/json; charset={charset}")
    assert response.status_code == 400
