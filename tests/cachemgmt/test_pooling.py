"""Connection pooling: requests borrow PostgreSQL connections from the pool instead of opening new ones."""

from __future__ import annotations

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory

from cachemgmt import cache
from tests.factories import UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def serve(path: str, headers: dict[str, str]) -> str:
    """One request through the real WSGI handler: request_finished hands the connection back."""
    environ = RequestFactory().get(path, **headers).environ
    statuses: list[str] = []
    response = WSGIHandler()(environ, lambda status, _headers, *exc: statuses.append(status))
    try:
        body = b"".join(response)
    finally:
        response.close()  # what a WSGI server does: sends request_finished
    assert statuses == ["200 OK"], body
    return statuses[0]


def backends_of(requests: int, headers: dict[str, str]) -> list[int]:
    pids: list[int] = []

    def record_backend(execute, sql, params, many, context):
        pids.append(context["connection"].connection.info.backend_pid)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record_backend):
        for _ in range(requests):
            cache.namespace_clear("user_context")  # every request loads the context from the database
            serve("/api/me", headers)
            assert connection.connection is None  # back in the pool, not held by the thread
    return pids


def test_sequential_requests_reuse_pooled_backends(bearer, postgres):
    headers = bearer(UserFactory())
    connection.close()
    connection.close_pool()  # a pool of its own size: earlier tests' concurrency may have grown the shared one

    pids = backends_of(8, headers)

    # Without a pool every request would open (and close) a backend of its own: 8 distinct pids.
    assert len(pids) >= 8
    assert len(set(pids)) <= connection.pool.get_stats()["pool_size"] < 8
