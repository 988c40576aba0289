"""Structured request logs: one line per request under a request id, no secrets, ids carried into tasks."""

from __future__ import annotations

import logging
import re
import time
from types import SimpleNamespace

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from project import request_context
from tests.factories import PASSWORD, UserFactory

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.django_db(transaction=True)
def test_one_line_per_request_with_request_id_user_and_context_cache_outcome(api_client, bearer, log_capture):
    user = UserFactory()
    headers = bearer(user)

    first = api_client.get("/api/me", HTTP_X_REQUEST_ID="req-1.a_B", **headers)
    second = api_client.get("/api/me?token=not-logged", HTTP_X_REQUEST_ID="req-2", **headers)

    assert first["X-Request-ID"] == "req-1.a_B" and second["X-Request-ID"] == "req-2"
    lines = log_capture.events("request")
    assert [line["request_id"] for line in lines] == ["req-1.a_B", "req-2"]
    for line in lines:
        assert line["method"] == "GET"
        assert line["path"] == "/api/me"  # never the query string
        assert line["status"] == 200
        assert line["user_id"] == user.pk
        assert isinstance(line["duration_ms"], float)
        assert line["level"] == "info"
    assert [line["context_cache"] for line in lines] == ["miss", "hit"]


@pytest.mark.parametrize("sent", ["", "has space", "x" * 65, "semi;colon", "new\nline", "ünïcode"])
def test_an_insane_request_id_is_replaced_by_a_generated_one(client, log_capture, sent):
    response = client.get("/health/live", HTTP_X_REQUEST_ID=sent)

    echoed = response["X-Request-ID"]
    assert HEX_ID.fullmatch(echoed)
    (line,) = log_capture.events("request")
    assert line["request_id"] == echoed
    assert line["user_id"] is None and line["context_cache"] is None


def test_every_log_line_of_a_request_carries_its_request_id(client, log_capture, monkeypatch):
    from cachemgmt import apis

    def logging_view(self, request):
        logging.getLogger("somewhere.deep").warning("inside the view")
        return apis.Response({"status": "ok"})

    monkeypatch.setattr(apis.LiveApi, "get", logging_view)
    client.get("/health/live", HTTP_X_REQUEST_ID="trace-me")

    (inner,) = log_capture.events("inside the view")
    assert inner["request_id"] == "trace-me"
    assert structlog.contextvars.get_contextvars().get("request_id") is None  # unbound after the request


@pytest.mark.django_db(transaction=True)
def test_passwords_tokens_and_authorization_headers_never_reach_the_logs(log_capture):
    user = UserFactory(username="carol")
    client = APIClient()

    wrong = client.post("/api/auth/login", {"username": "carol", "password": "Wrong-Secret-42"}, format="json")
    login = client.post("/api/auth/login", {"username": "carol", "password": PASSWORD}, format="json")
    token = login.json()["access_token"]
    me = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    logout = client.post("/api/auth/logout", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")
    after = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert (wrong.status_code, login.status_code, me.status_code, logout.status_code, after.status_code) == (
        401,
        200,
        200,
        204,
        401,
    )
    text = log_capture.text
    assert len(log_capture.events("request")) == 5
    assert any(line.get("user_id") == user.pk for line in log_capture.events("request"))
    for secret in (PASSWORD, "Wrong-Secret-42", token, *token.split(".")[1:], f"Bearer {token}"):
        assert secret not in text


def test_a_task_published_during_a_request_carries_its_id_and_logs_with_it(log_capture):
    headers: dict[str, str] = {}
    tokens = structlog.contextvars.bind_contextvars(request_id="req-for-task")
    try:
        request_context._before_task_publish(headers=headers)
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    assert headers == {"request_id": "req-for-task"}

    task = SimpleNamespace(request=SimpleNamespace(request_id=None, headers=headers))
    request_context._task_prerun(task=task, task_id="t-1")
    logging.getLogger("zones.tasks").info("task working")
    request_context._task_postrun(task=task, task_id="t-1")
    logging.getLogger("zones.tasks").info("task done")

    (working,) = log_capture.events("task working")
    (done,) = log_capture.events("task done")
    assert working["request_id"] == "req-for-task"
    assert "request_id" not in done


@pytest.mark.slow
@pytest.mark.services
def test_a_real_worker_logs_with_the_id_of_the_request_that_queued_the_task(log_capture, redis_cache):
    from celery.contrib.testing.worker import start_worker

    from project.celery import app

    assert not app.conf.task_always_eager, "a broker is configured with Redis"
    queue = f"test-request-id-{time.monotonic_ns()}"
    probe_logger = logging.getLogger("tests.probe")
    # The worker reconfigures the root logger: listen on the task's own logger.
    handler = log_capture.handler()
    probe_logger.addHandler(handler)
    probe_logger.propagate = False
    probe_logger.setLevel(logging.INFO)
    seen: list[object] = []

    @app.task(name="tests.cachemgmt.log_probe", shared=False)
    def log_probe() -> None:
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        probe_logger.info("probe ran")

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], loglevel="WARNING"):
            tokens = structlog.contextvars.bind_contextvars(request_id="req-queued-it")
            try:
                log_probe.apply_async(queue=queue)
            finally:
                structlog.contextvars.reset_contextvars(**tokens)
            deadline = time.monotonic() + 20
            while not seen and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        probe_logger.removeHandler(handler)
        probe_logger.propagate = True
        probe_logger.setLevel(logging.NOTSET)
        app.tasks.pop("tests.cachemgmt.log_probe", None)

    assert seen == ["req-queued-it"]
    (ran,) = log_capture.events("probe ran")
    assert ran["request_id"] == "req-queued-it"


def generic_formatter():
    """structlog's chain with the same redaction step every record outside the direct path takes."""
    import structlog

    from project.logging import FOREIGN_PRE_CHAIN, redact_event, renderer

    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        foreign_pre_chain=FOREIGN_PRE_CHAIN,
    )


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("path", "request_id"),
    [
        ("/api/me", "req-1"),
        (f"/api/reset/{JWT}", "req-1"),  # a credential in the path
        ("/api/me", JWT),  # ... or in the id a client sent
        ("/api/password=hunter2/x", "req-1"),
        ("/api/caf\u00e9/Bearer abcdefghijkl", "req-1"),  # not ASCII: the case-insensitive search
    ],
)
def test_access_line_fast_path_matches_the_structlog_chain(path, request_id):
    """The direct JSON path for the access line renders what the generic chain renders,
    redaction included."""
    import json
    import logging

    import structlog

    from project.logging import FOREIGN_PRE_CHAIN, Formatter, renderer

    fields = {"method": "GET", "path": path, "status": 200, "duration_ms": 1.5, "user_id": 7}
    fields |= {"context_cache": "hit", "view": "me"}
    record = logging.getLogger("project.request").makeRecord(
        "project.request", logging.INFO, __file__, 1, "request", (), None, extra=fields
    )
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        fast = json.loads(Formatter(processor=renderer, foreign_pre_chain=FOREIGN_PRE_CHAIN).format(record))
        chain = json.loads(generic_formatter().format(record))
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    fast.pop("timestamp")
    chain.pop("timestamp")
    assert fast == chain
    assert JWT not in json.dumps(fast) and "hunter2" not in json.dumps(fast) and "abcdefghijkl" not in json.dumps(fast)
    if path == "/api/me" and request_id == "req-1":
        assert fast["request_id"] == "req-1" and fast["path"] == "/api/me"


@given(st.text(max_size=80) | st.from_regex(r"[ -~]{0,20}(eyJ|BeArEr|Basic|://u:p@|PassWord|API-key|CSRF)[ -~]{0,20}"))
@settings(max_examples=300, deadline=None)
def test_the_quick_credential_check_agrees_with_the_case_insensitive_search(text):
    from project.logging import _SUSPECT, suspect

    assert suspect(text) == bool(_SUSPECT.search(text))


class _QuietDict(dict):
    def __repr__(self) -> str:
        return "{}"


@pytest.mark.parametrize(
    ("message", "view"),
    [
        ("token=%s", "me"),  # a secret in the message itself
        ("request", _QuietDict(token="s3cret")),  # an object whose repr hides what JSON writes
        ("request", {"b", "a"}),  # a set: written as the generic path writes it
    ],
)
def test_access_line_fast_path_redacts_the_message_and_any_object(message, view):
    import json
    import logging

    from project.logging import FOREIGN_PRE_CHAIN, Formatter, renderer

    fields = {"method": "GET", "path": "/api/me", "status": 200, "duration_ms": 1.5, "user_id": 7}
    fields |= {"context_cache": "hit", "view": view}
    args = ("s3cret",) if "%s" in message else ()
    record = logging.getLogger("project.request").makeRecord(
        "project.request", logging.INFO, __file__, 1, message, args, None, extra=fields
    )
    fast_text = Formatter(processor=renderer, foreign_pre_chain=FOREIGN_PRE_CHAIN).format(record)
    fast, chain = json.loads(fast_text), json.loads(generic_formatter().format(record))
    fast.pop("timestamp")
    chain.pop("timestamp")
    assert fast == chain
    assert "s3cret" not in fast_text


@pytest.fixture
def root_stream(monkeypatch):
    """The root logger as the project configures it (one StreamHandler with the project's
    formatter), writing to a buffer; and a count of the access records logging builds."""
    import io

    from project.logging import ACCESS_LOGGER, FOREIGN_PRE_CHAIN, Formatter, renderer

    monkeypatch.setattr(renderer, "_inner", structlog.processors.JSONRenderer())  # JSON, as without DEBUG
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(Formatter(processor=renderer, foreign_pre_chain=FOREIGN_PRE_CHAIN))
    monkeypatch.setattr(logging.root, "handlers", [handler])
    monkeypatch.setattr(logging.root, "level", logging.INFO)
    logging.root.manager._clear_cache()
    records: list[str] = []
    make_record = logging.Logger.makeRecord

    def counting(self, name, *args, **kwargs):
        if name == ACCESS_LOGGER:
            records.append(name)
        return make_record(self, name, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    # pytest's own capture adds a handler to the root for each test's call: the body sets the
    # root's handlers again with ``only()``.
    yield SimpleNamespace(
        buffer=buffer,
        handler=handler,
        records=records,
        only=lambda *more: monkeypatch.setattr(logging.root, "handlers", [handler, *more]),
    )
    monkeypatch.undo()  # the root's level and handlers back first, then the loggers' cached levels
    logging.root.manager._clear_cache()


def access_lines(text: str) -> list[dict]:
    import json

    return [line for line in map(json.loads, text.splitlines()) if line.get("logger") == "project.request"]


def test_the_access_line_is_written_straight_to_the_configured_stream(client, root_stream):
    """With logging as the project configures it, the access line is written to the root's stream
    without a LogRecord, and it is the text the formatter renders for the record logging would
    have built."""
    from project.logging import ACCESS_LOGGER

    root_stream.only()
    client.get("/health/live", HTTP_X_REQUEST_ID="lane-1")

    (line,) = access_lines(root_stream.buffer.getvalue())
    assert root_stream.records == []
    assert (line["event"], line["request_id"], line["level"]) == ("request", "lane-1", "info")
    assert (line["method"], line["path"], line["status"], line["view"]) == ("GET", "/health/live", 200, "health-live")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", line["timestamp"])
    fields = {name: line[name] for name in ("method", "path", "status", "duration_ms", "user_id", "context_cache")}
    record = logging.getLogger(ACCESS_LOGGER).makeRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 1, "request", (), None, extra=fields | {"view": line["view"]}
    )
    tokens = structlog.contextvars.bind_contextvars(request_id="lane-1")
    try:
        chain = __import__("json").loads(generic_formatter().format(record))
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    assert {k: v for k, v in line.items() if k != "timestamp"} == {k: v for k, v in chain.items() if k != "timestamp"}


def test_the_access_line_goes_through_logging_when_the_configuration_is_not_the_default(client, root_stream):
    """Another handler on the way (a file, a collector, a test's capture) gets the line too, and a
    level set above INFO silences it: the direct write steps aside."""
    import io

    from project.logging import ACCESS_LOGGER

    other = io.StringIO()
    extra = logging.StreamHandler(other)
    extra.setFormatter(root_stream.handler.formatter)
    root_stream.only(extra)

    client.get("/health/live", HTTP_X_REQUEST_ID="lane-2")

    assert [line["request_id"] for line in access_lines(root_stream.buffer.getvalue())] == ["lane-2"]
    assert [line["request_id"] for line in access_lines(other.getvalue())] == ["lane-2"]
    assert root_stream.records == [ACCESS_LOGGER]

    root_stream.only()
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.WARNING)
    try:
        client.get("/health/live", HTTP_X_REQUEST_ID="lane-3")
    finally:
        access.setLevel(logging.NOTSET)
    assert "lane-3" not in root_stream.buffer.getvalue()


def test_an_access_line_that_cannot_be_rendered_is_reported_and_the_request_answers(client, root_stream, monkeypatch):
    """As ``StreamHandler.emit`` does for a record: an error while rendering the line (here a value
    bound for the request's log lines whose repr fails) goes to the handler's ``handleError``,
    and the response is the view's, not a 500."""
    from cachemgmt import apis

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    def binding_view(self, request):
        structlog.contextvars.bind_contextvars(extra_field=Unprintable())
        return apis.Response({"status": "ok"})

    reported: list[str] = []
    monkeypatch.setattr(apis.LiveApi, "get", binding_view)
    monkeypatch.setattr(root_stream.handler, "handleError", lambda record: reported.append(record.getMessage()))
    root_stream.only()
    try:
        response = client.get("/health/live", HTTP_X_REQUEST_ID="lane-4")
    finally:
        structlog.contextvars.unbind_contextvars("extra_field")

    assert response.status_code == 200
    assert reported == ["request"]
    assert "lane-4" not in root_stream.buffer.getvalue()
