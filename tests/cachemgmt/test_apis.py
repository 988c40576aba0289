"""Operations API: statistics, clearing and zone sync, staff only, audited."""

from __future__ import annotations

import sys
import types

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from cachemgmt import cache
from cachemgmt.models import CacheAuditEntry
from tests.factories import PASSWORD, UserFactory
from tests.support.services import uses_postgres
from zones.models import ZoneSyncRun

pytestmark = pytest.mark.django_db
# Contexts are cached only outside a transaction with pending invalidations: tests that
# depend on cache fills commit their rows.
committed = pytest.mark.django_db(transaction=True)

STATS = "/api/admin/cache/stats"
CLEAR = "/api/admin/cache/clear"
SYNC = "/api/admin/zones/sync"


def context_queries() -> int:
    """Queries of one context fill: one statement on PostgreSQL, two elsewhere."""
    return 1 if uses_postgres() else 2


@pytest.mark.parametrize(("method", "path"), [("get", STATS), ("post", CLEAR), ("post", SYNC)])
def test_staff_endpoints_refuse_anonymous_with_401_and_bearer_challenge(api_client, method, path):
    response = getattr(api_client, method)(path, {"namespace": "all"}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not CacheAuditEntry.objects.exists()


@pytest.mark.parametrize(("method", "path"), [("get", STATS), ("post", CLEAR), ("post", SYNC)])
def test_staff_endpoints_refuse_non_staff_with_403(api_client, bearer, member, method, path):
    response = getattr(api_client, method)(path, {"namespace": "all"}, format="json", **bearer(member))
    assert response.status_code == 403
    assert not CacheAuditEntry.objects.exists()


@committed
def test_stats_have_contract_shape_and_count_context_lookups(api_client, bearer, staff_user, member):
    headers = bearer(member)
    api_client.get("/api/me", **headers)  # miss and fill
    api_client.get("/api/me", **headers)  # hit
    ZoneSyncRun.objects.create(
        started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:01:00Z", source="fixture", status="ok", rows=12
    )

    response = api_client.get(STATS, **bearer(staff_user))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"backend", "since", "namespaces", "server", "carrier"}
    assert body["backend"] == ("redis" if settings.REDIS_URL else "locmem")
    assert body["since"].endswith("Z")
    user_context = body["namespaces"]["user_context"]
    assert set(user_context) == {"hits", "misses", "hit_ratio", "near_hits", "fills", "invalidations", "keys"}
    assert 0 <= user_context["near_hits"] <= user_context["hits"]
    assert user_context["hits"] >= 1 and user_context["misses"] >= 1 and user_context["fills"] >= 1
    assert user_context["hit_ratio"] == round(user_context["hits"] / (user_context["hits"] + user_context["misses"]), 4)
    zones = body["namespaces"]["zones"]
    last_sync = dict(zones["last_sync"])
    assert isinstance(last_sync.pop("run_id"), int)
    assert last_sync == {"status": "ok", "finished_at": "2026-01-01T00:01:00Z", "rows": 12}
    if settings.REDIS_URL:
        assert user_context["keys"] is None
        assert set(body["server"]) == {"used_memory", "connected_clients"}
        assert body["server"]["connected_clients"] >= 1
    else:
        assert user_context["keys"] >= 1
        assert body["server"] is None


def test_stats_last_sync_is_null_before_the_first_sync(api_client, bearer, staff_user):
    body = api_client.get(STATS, **bearer(staff_user)).json()
    assert body["namespaces"]["zones"]["last_sync"] is None


@committed
def test_clearing_user_context_refills_every_user_from_the_database(
    api_client, bearer, staff_user, django_assert_num_queries
):
    users = [UserFactory() for _ in range(3)]
    headers = {user.pk: bearer(user) for user in users}
    for user in users:
        assert api_client.get("/api/me", **headers[user.pk]).status_code == 200
    with django_assert_num_queries(0):
        api_client.get("/api/me", **headers[users[0].pk])  # warm: served from the cache

    response = api_client.post(CLEAR, {"namespace": "user_context"}, format="json", **bearer(staff_user))

    assert response.status_code == 200
    assert response.json() == {"namespace": "user_context", "cleared": ["user_context"]}
    for user in users:
        with django_assert_num_queries(context_queries()):
            assert api_client.get("/api/me", **headers[user.pk]).json()["user"]["id"] == user.pk
        with django_assert_num_queries(0):
            api_client.get("/api/me", **headers[user.pk])


@pytest.mark.services
def test_clearing_never_touches_keys_outside_the_project(api_client, bearer, staff_user, redis_cache):
    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    client.set("foreign:key", b"keep me")
    try:
        response = api_client.post(CLEAR, {"namespace": "all"}, format="json", **bearer(staff_user))
        assert response.status_code == 200
        assert client.get("foreign:key") == b"keep me"
    finally:
        client.delete("foreign:key")


@committed
def test_clearing_one_user_refills_only_that_user(api_client, bearer, staff_user, django_assert_num_queries):
    alice, bob = UserFactory(), UserFactory()
    headers = {user.pk: bearer(user) for user in (alice, bob)}
    for user in (alice, bob):
        api_client.get("/api/me", **headers[user.pk])

    response = api_client.post(
        CLEAR, {"namespace": "user_context", "user_id": alice.pk}, format="json", **bearer(staff_user)
    )

    assert response.status_code == 200
    assert response.json() == {"namespace": "user_context", "cleared": [f"user_context of user {alice.pk}"]}
    with django_assert_num_queries(context_queries()):
        api_client.get("/api/me", **headers[alice.pk])
    with django_assert_num_queries(0):
        api_client.get("/api/me", **headers[bob.pk])


def test_clearing_all_clears_every_namespace_and_is_audited(api_client, bearer, staff_user):
    before = {ns: cache.stats_read(ns).get("invalidations", 0) for ns in cache.NAMESPACES}

    response = api_client.post(CLEAR, {"namespace": "all"}, format="json", **bearer(staff_user))

    assert response.json() == {"namespace": "all", "cleared": ["user_context", "zones"]}
    after = {ns: cache.stats_read(ns).get("invalidations", 0) for ns in cache.NAMESPACES}
    assert all(after[ns] > before[ns] for ns in cache.NAMESPACES)
    entry = CacheAuditEntry.objects.get()
    assert (entry.actor_id, entry.actor_label, entry.source, entry.action, entry.target) == (
        staff_user.pk,
        staff_user.username,
        "api",
        "clear",
        "all",
    )
    assert entry.result == "cleared user_context, zones"


@pytest.mark.parametrize(
    "body",
    [
        {"namespace": "sessions"},
        {"namespace": ""},
        {"namespace": 5},
        {"namespace": ["all"]},
        {},
        {"namespace": "user_context", "user_id": "abc"},
        {"namespace": "user_context", "user_id": True},
        {"namespace": "user_context", "user_id": 0},
        {"namespace": "user_context", "user_id": 2**70},
        {"namespace": "user_context", "user_id": 987654321},
        {"namespace": "zones", "user_id": 1},
        ["all"],
    ],
)
def test_clear_refuses_unknown_namespace_unknown_user_and_bad_types_with_400(api_client, bearer, staff_user, body):
    response = api_client.post(CLEAR, body, format="json", **bearer(staff_user))
    assert response.status_code == 400
    assert response.json()
    assert not CacheAuditEntry.objects.exists()


def test_staff_endpoints_accept_an_admin_session_with_its_csrf_token(staff_user):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=staff_user.username, password=PASSWORD)

    assert client.get(STATS).status_code == 200
    refused = client.post(CLEAR, {"namespace": "zones"}, content_type="application/json")
    assert refused.status_code == 403
    assert not CacheAuditEntry.objects.exists()

    client.get("/admin/")  # sets the CSRF cookie, as the admin page does
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    accepted = client.post(CLEAR, {"namespace": "zones"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200
    assert accepted.json() == {"namespace": "zones", "cleared": ["zones"]}
    assert CacheAuditEntry.objects.get().actor_id == staff_user.pk


def test_admin_session_of_non_staff_user_is_refused(member):
    client = APIClient()
    client.force_login(member)
    assert client.get(STATS).status_code == 403


@pytest.fixture
def zone_sync_enqueue(monkeypatch):
    """Stands in for zones.services.zone_sync_enqueue, recording its calls."""
    calls: list[object] = []
    outcome: dict[str, object] = {"value": None}

    def fake() -> object:
        calls.append(True)
        return outcome["value"]

    try:
        import zones.services as module
    except ImportError:
        module = types.ModuleType("zones.services")
        monkeypatch.setitem(sys.modules, "zones.services", module)
    monkeypatch.setattr(module, "zone_sync_enqueue", fake, raising=False)
    fake.calls = calls  # type: ignore[attr-defined]
    fake.outcome = outcome  # type: ignore[attr-defined]
    return fake


def test_zone_sync_is_queued_with_202_and_audited(api_client, bearer, staff_user, zone_sync_enqueue):
    response = api_client.post(SYNC, **bearer(staff_user))

    assert response.status_code == 202
    assert response.json() == {"status": "queued"}
    assert zone_sync_enqueue.calls == [True]
    entry = CacheAuditEntry.objects.get()
    assert (entry.action, entry.target, entry.source, entry.result) == ("zone_sync", "zones", "api", "status=queued")


def test_zone_sync_without_broker_returns_the_inline_outcome(api_client, bearer, staff_user, zone_sync_enqueue):
    zone_sync_enqueue.outcome["value"] = ZoneSyncRun(
        started_at="2026-01-01T00:00:00Z", finished_at=None, source="fixture", status="ok", rows=7
    )

    response = api_client.post(SYNC, **bearer(staff_user))

    assert response.status_code == 200  # done, not accepted for later
    assert response.json() == {"status": "ok", "rows": 7}
    assert CacheAuditEntry.objects.get().result == "status=ok rows=7"


@committed
def test_zone_sync_calls_the_zone_app_and_answers_202_or_200_when_it_ran_inline(api_client, bearer, staff_user):
    from project.celery import app

    response = api_client.post(SYNC, **bearer(staff_user))

    body = response.json()
    assert response.status_code == (202 if not app.conf.task_always_eager else 200)
    if not app.conf.task_always_eager:
        assert body == {"status": "queued"}
        # The task is on the broker; take it off so no other test's worker runs it.
        with app.connection_for_write() as conn:
            assert conn.default_channel.queue_purge(app.conf.task_default_queue) >= 1
    else:  # no broker: the sync ran inline (here it fails: the fixture's organizations do not exist)
        assert body["status"] in {"ok", "failed"}
        assert {"rows", "error", "source"} <= set(body)
    assert CacheAuditEntry.objects.get().result.startswith(f"status={body['status']}")


@pytest.mark.slow
@pytest.mark.services
@committed
def test_stats_count_the_lookups_of_every_process_sharing_the_cache(bearer, web_process, postgres, redis_cache):
    import time
    import urllib.request

    from cachemgmt.selectors import cache_stats_get

    user = UserFactory()
    web = web_process(workers=2)
    for _ in range(4):
        request = urllib.request.Request(
            f"{web.url}/api/me", headers={"Authorization": bearer(user)["HTTP_AUTHORIZATION"]}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    # The workers flush their counters within a few seconds, even when idle.
    deadline = time.monotonic() + 15
    while True:
        counters = cache_stats_get()["namespaces"]["user_context"]
        if counters["hits"] + counters["misses"] >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counters["hits"] + counters["misses"] >= 4
    assert counters["fills"] >= 1
