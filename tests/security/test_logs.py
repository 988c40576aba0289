"""No password, token or Authorization header in any log line of a login, me, logout, failed login sequence."""

from __future__ import annotations

import io
import logging

import pytest
import structlog
from rest_framework.test import APIClient

from project.logging import FOREIGN_PRE_CHAIN, Formatter
from tests.factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def all_log_output():
    """Every record at every level, rendered the way production renders it (JSON) and raw."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter(processor=structlog.processors.JSONRenderer(), foreign_pre_chain=FOREIGN_PRE_CHAIN))
    handler.setLevel(logging.DEBUG)
    records: list[logging.LogRecord] = []
    recorder = logging.Handler(logging.DEBUG)
    recorder.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield stream, records
    finally:
        root.removeHandler(handler)
        root.removeHandler(recorder)
        root.setLevel(previous)


def test_a_session_logs_no_secret(all_log_output):
    stream, records = all_log_output
    user = MembershipFactory().user
    client = APIClient()

    def login_as(username: str, password: str):
        return client.post("/api/auth/login", {"username": username, "password": password}, format="json")

    typo = "correct horse battery staple!"  # a near-miss password is a secret too
    assert login_as(user.username, typo).status_code == 401
    # A password typed into the username field ends up in the username: it must not be logged either.
    assert login_as(PASSWORD, PASSWORD).status_code == 401
    login = login_as(user.username, PASSWORD)
    token = login.json()["access_token"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/api/me", **auth).status_code == 200
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}tampered").status_code == 401
    assert client.post("/api/auth/logout", {}, format="json", **auth).status_code == 204
    assert client.get("/api/me", **auth).status_code == 401

    rendered = stream.getvalue()
    raw = "\n".join(
        f"{record.getMessage()} {record.args!r} "
        + " ".join(f"{k}={v!r}" for k, v in vars(record).items() if k not in {"msg", "args"})
        for record in records
    )
    assert rendered.count("\n") >= 7, rendered  # the requests were logged, so there was something to leak
    signature = token.rsplit(".", 1)[1]
    for secret in (PASSWORD, typo, token, signature, "Bearer "):
        assert secret not in rendered, secret
    for secret in (PASSWORD, typo, signature):  # never even handed to a logger
        assert secret not in raw, secret
    assert "authorization" not in rendered.lower()
