"""Behind PgBouncer in transaction mode (``DB_POOLER=transaction``): the request path, a zone sync
and the change capture give the same answers for the same statements as on a direct connection."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from accounts.selectors import user_context_get
from accounts.services import user_set_active
from cachemgmt import cache, carrier
from tests.factories import PASSWORD, MembershipFactory, OrganizationFactory
from tests.support.faults import http
from tests.support.pgbouncer import PgBouncer
from tests.support.processes import process_env
from zones import services as zone_services
from zones.models import ZoneAssignment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


def user_name() -> str:
    return str(connection.settings_dict["USER"] or "postgres")


@pytest.fixture
def pgbouncer(postgres, settings) -> Iterator[PgBouncer]:
    """This process's database connection through a PgBouncer of its own, in transaction mode,
    configured the way ``DB_POOLER=transaction`` and ``DATABASE_DIRECT_URL`` configure it."""
    direct = copy.deepcopy(connection.settings_dict)
    bouncer = PgBouncer.started(
        upstream_host=direct["HOST"] or "127.0.0.1", upstream_port=int(direct["PORT"] or 5432), user=user_name()
    )
    connection.close()
    connection.close_pool()
    connection.settings_dict.update(
        HOST="127.0.0.1",
        PORT=bouncer.port,
        DISABLE_SERVER_SIDE_CURSORS=True,
        OPTIONS={**direct["OPTIONS"], "prepare_threshold": None},
    )
    settings.DB_POOLER = "transaction"
    settings.DATABASE_DIRECT = {"HOST": direct["HOST"] or "127.0.0.1", "PORT": direct["PORT"] or 5432}
    try:
        yield bouncer
    finally:
        connection.close()
        connection.close_pool()
        connection.settings_dict.clear()
        connection.settings_dict.update(direct)
        bouncer.remove()


def clients_through(bouncer: PgBouncer) -> int:
    """Client connections PgBouncer serves for the test database (not its admin console)."""
    rows = bouncer.admin("SHOW CLIENTS", user_name())
    return sum(1 for row in rows if str(row[2]) == str(connection.settings_dict["NAME"]))  # type, user, database


def test_the_request_path_costs_the_same_statements_through_pgbouncer(pgbouncer, django_assert_num_queries):
    member = MembershipFactory()
    assert clients_through(pgbouncer) >= 1  # this process's connection really goes through it
    cache.namespace_clear("user_context")
    with django_assert_num_queries(1):  # cold: one statement, as on a direct connection
        context = user_context_get(user_id=member.user_id)
    assert context is not None and context.organization_id == member.organization_id
    with django_assert_num_queries(0):
        assert user_context_get(user_id=member.user_id) == context
    # Server-side cursors are off: an iterator works whichever server connection serves it.
    assert len(list(type(member).objects.order_by("pk").iterator(chunk_size=2))) == 1


def test_a_zone_sync_runs_through_pgbouncer(pgbouncer, bigquery):
    OrganizationFactory(slug="acme")
    bigquery.rows = [("acme", "EU-N", "Europe North"), ("acme", "US-E", "US East")]
    outcome = zone_services.zone_sync_exclusive()
    assert outcome.ok, outcome
    assert ZoneAssignment.objects.count() == 2


@pytest.fixture
def running_carrier(pgbouncer) -> Iterator[None]:
    carrier.carrier_enable()
    carrier.carrier_start()
    try:
        deadline = time.monotonic() + 10
        while not carrier.cache_trusted():
            assert time.monotonic() < deadline, "the carrier never caught up"
            time.sleep(0.01)
        yield
    finally:
        carrier.carrier_stop()
        carrier.carrier_enable(False)
        connection.close()


def test_change_capture_reaches_the_cache_through_pgbouncer(running_carrier):
    """A write through the pooler is captured; the carrier LISTENs on the direct connection (the
    change arrives within 5 s, before the carrier's 10-s verification pass would find it)."""
    member = MembershipFactory()
    context = user_context_get(user_id=member.user_id)
    assert context is not None and context.is_active
    with connection.cursor() as cursor:  # no signal: only the capture can tell the cache
        cursor.execute("UPDATE accounts_user SET is_active = false WHERE id = %s", [member.user_id])
    deadline = time.monotonic() + 5
    while (current := user_context_get(user_id=member.user_id)) is not None and current.is_active:
        assert time.monotonic() < deadline, "the change never reached the cache"
        time.sleep(0.02)
    user_set_active(user_id=member.user_id, is_active=True)


def test_a_web_process_serves_through_pgbouncer(pgbouncer, web_process):
    member = MembershipFactory()
    direct: dict[str, Any] = process_env()
    user = user_name()
    name = connection.settings_dict["NAME"]
    web = web_process(
        DATABASE_URL=f"postgres://{user}@127.0.0.1:{pgbouncer.port}/{name}",
        DATABASE_DIRECT_URL=direct["DATABASE_URL"],
        DB_POOLER="transaction",
    )
    login = http(web.port, "POST", "/api/auth/login", body={"username": member.user.username, "password": PASSWORD})
    assert login.status == 200, login.body
    body = login.json()
    for _ in range(3):
        assert http(web.port, "GET", "/api/me", token=body["access_token"]).status == 200
    refreshed = http(web.port, "POST", "/api/auth/refresh", body={"refresh_token": body["refresh_token"]})
    assert refreshed.status == 200, refreshed.body
    assert http(web.port, "GET", "/health").json()["checks"]["database"]["status"] == "ok"
