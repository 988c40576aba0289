"""PostgreSQL connections killed under load: the pool recovers, and what fails, fails as a clean 503."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.support.faults import CommittedState, Traffic

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

WORKERS = 2


def terminate_backends() -> int:
    """Kill every other session on the test database (web workers' pooled connections included)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.slow
def test_postgres_connections_killed_under_load(postgres, webs, hardening_report):
    state = CommittedState(users=12)
    (web,) = webs(1, workers=WORKERS)
    killed: list[int] = []
    with Traffic(state, [web.port], readers=4, writers=1, write_kinds=("profile", "membership")) as traffic:
        traffic.run_for(1.5)
        traffic.phase = "kills"
        for _ in range(3):  # three rounds, a second apart
            killed.append(terminate_backends())
            traffic.run_for(1.0)
        traffic.phase = "after"
        after = traffic.tally.sent
        failed_before_after = traffic.tally.failed
        traffic.run_for(2.0)
        failed_after = traffic.tally.failed - failed_before_after
        sent_after = traffic.tally.sent - after
    tally = traffic.stop()
    hardening_report(**tally.figures(), rounds=len(killed), backends_killed=killed, failed_after_recovery=failed_after)
    assert all(killed)
    assert tally.unclean == 0, tally.samples  # every failure is a JSON 503 with Retry-After
    # Per worker and round: the request in flight, or the first to borrow a dead pooled
    # connection (its failure drains the pool), never one per pooled connection.
    assert tally.failed <= WORKERS * len(killed), tally.samples
    assert failed_after == 0 and sent_after > 0, tally.samples
    assert tally.stale == 0, tally.samples


def test_database_errors_are_a_503_with_retry_after(api_client, bearer, monkeypatch):
    """Not a 500 with a traceback: the client is told to retry."""
    from django.db import InterfaceError, OperationalError

    from accounts import selectors
    from tests.factories import UserFactory

    headers = bearer(UserFactory())
    for error in (OperationalError("server closed the connection unexpectedly"), InterfaceError("connection closed")):

        def broken(*, user_id, error=error):
            raise error

        monkeypatch.setattr(selectors, "user_context_load", broken)
        response = api_client.get("/api/me", **headers)
        assert response.status_code == 503
        assert response.json() == {"detail": "Service temporarily unavailable.", "code": "unavailable"}
        assert response["Retry-After"] == "1"
