"""No secret reaches a log line from any source: query strings, request reprs, headers, bodies, exceptions.

Every test renders through the formatter the project configures on the root handler, so what
is checked is what production writes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from tests.factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def production_log() -> Iterator[io.StringIO]:
    """Every record, at every level, rendered by the project's configured formatter."""
    configured = logging.getLogger().handlers[0].formatter
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configured)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture
def token() -> str:
    user = MembershipFactory().user
    login = APIClient().post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json")
    return login.json()["access_token"]


def assert_no_secret(text: str, *secrets: str) -> None:
    assert text.strip(), "nothing was logged, so nothing was checked"
    for secret in secrets:
        assert secret not in text, secret
        for part in secret.split("."):  # each part of a token is a secret on its own
            if len(part) > 8:
                assert part not in text, part


def test_a_query_string_with_a_token_and_a_password(production_log, token):
    query = {"access_token": token, "password": PASSWORD, "refresh_token": "r" * 40}
    response = APIClient().get("/api/me", query)
    assert response.status_code == 401
    # A library logging the request (its repr carries the query string), as Django's
    # django.request did before the access line became the only one.
    logging.getLogger("thirdparty.web").warning("Unauthorized: %r", response.wsgi_request)
    text = production_log.getvalue()
    assert "Unauthorized" in text and "WSGIRequest" in text
    assert_no_secret(text, token, PASSWORD.replace(" ", "+"), PASSWORD.replace(" ", "%20"), "r" * 40)


def test_a_failed_request_writes_one_line_and_a_server_error_carries_its_traceback(production_log, monkeypatch):
    import json

    from accounts import apis

    APIClient().get("/api/me")  # 401
    lines = [json.loads(line) for line in production_log.getvalue().splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines if line.get("path") == "/api/me" or "Unauthorized" in line["event"]] == [
        "request"
    ]

    def boom(*_args, **_kwargs):
        raise RuntimeError("kaboom with password=hunter2-secret")

    monkeypatch.setattr(apis.MeApi, "get", boom)
    production_log.seek(0)
    production_log.truncate()
    user = MembershipFactory().user
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    assert client.get("/api/me").status_code == 500
    lines = [json.loads(line) for line in production_log.getvalue().splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("status") == 500 or "Internal Server Error" in line["event"]]
    assert len(failed) == 1 and failed[0]["event"] == "request" and failed[0]["level"] == "error"
    assert "RuntimeError" in failed[0]["exception"] and "hunter2-secret" not in production_log.getvalue()


def test_headers_logged_by_any_logger(production_log, token):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_COOKIE": "sessionid=s3ss10nS3cr3t; csrftoken=csrfS3cr3t"}
    logging.getLogger("thirdparty.client").warning("request headers %s", headers)
    logging.getLogger("thirdparty.client").info("sent", extra={"headers": headers, "meta": str(headers)})
    logging.getLogger("thirdparty.client").info("auth header: Authorization: Basic dXNlcjpjb3JyZWN0IGhvcnNl")
    assert_no_secret(production_log.getvalue(), token, "s3ss10nS3cr3t", "csrfS3cr3t", "dXNlcjpjb3JyZWN0IGhvcnNl")


def test_bodies_logged_by_any_logger(production_log, token):
    json_body = f'{{"username": "alice", "password": "{PASSWORD}", "refresh_token": "{token}"}}'.encode()
    form_body = f"username=alice&password={PASSWORD.replace(' ', '+')}".encode()
    logging.getLogger("thirdparty.debug").debug("body %r", json_body)
    logging.getLogger("thirdparty.debug").debug("form %s", form_body.decode())
    logging.getLogger("thirdparty.debug").info("parsed", extra={"data": {"username": "alice", "password": PASSWORD}})
    assert_no_secret(production_log.getvalue(), token, PASSWORD, PASSWORD.replace(" ", "+"))


def test_exceptions_and_their_tracebacks(production_log, token):
    try:
        raise ValueError(f"could not verify Bearer {token} with password={PASSWORD!r}")
    except ValueError:
        logging.getLogger("thirdparty.worker").exception("verification crashed")
    text = production_log.getvalue()
    assert "Traceback" in text and "verification crashed" in text
    assert_no_secret(text, token, PASSWORD)


def test_other_credential_shapes(production_log, token):
    logger = logging.getLogger("thirdparty.client")
    logger.info("calling with Authorization: Token %s", "0123456789abcdefTOKEN")
    logger.info("headers", extra={"pairs": [("Authorization", f"Bearer {token}"), ("X-Api-Key", "k3yk3yk3y")]})
    logger.warning("connecting to redis://:r3disPassw0rd@cache:6379/0 and postgres://app:pgPassw0rd@db/app")
    logger.info("pwd=%s private_key=%s", "hunter2hunter2", "-----BEGINKEY-----")
    assert_no_secret(
        production_log.getvalue(), token, "0123456789abcdefTOKEN", "k3yk3yk3y", "r3disPassw0rd", "pgPassw0rd",
        "hunter2hunter2", "-----BEGINKEY-----",
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_refresh_tokens_never_reach_the_log_through_a_refresh_or_a_reuse(production_log, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "REFRESH_REUSE_LEEWAY": 0}
    user = MembershipFactory().user
    client = APIClient()
    first = client.post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json").json()
    second = client.post("/api/auth/refresh", {"refresh_token": first["refresh_token"]}, format="json").json()
    reused = client.post("/api/auth/refresh", {"refresh_token": first["refresh_token"]}, format="json")
    assert reused.status_code == 401
    text = production_log.getvalue()
    reuse = next(line for line in text.splitlines() if "refresh token reused" in line)
    assert '"event": "refresh token reused: session ended"' in reuse and '"category": "security"' in reuse
    assert_no_secret(text, first["refresh_token"], second["refresh_token"], first["access_token"])
