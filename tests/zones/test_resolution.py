"""Resolution on the request path: requests read the snapshot, never BigQuery, and never wait for a sync."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.selectors import user_context_get
from accounts.services import context_invalidate
from project.celery import app
from tests.factories import MembershipFactory
from tests.support.bigquery import TABLE
from zones import services
from zones.models import ZoneSyncRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

ME = "/api/me"


@pytest.fixture
def requested(monkeypatch) -> list[str]:
    """Syncs requests asked for (recorded where the task would be sent)."""
    calls: list[str] = []
    monkeypatch.setattr(services, "_send_logged", lambda *, reason: calls.append(reason))
    return calls


@pytest.fixture
def with_broker(monkeypatch) -> None:
    # Whether a broker is configured or not, the request path only records the send.
    monkeypatch.setitem(app.conf, "task_always_eager", False)


def me(api_client, headers) -> dict:
    response = api_client.get(ME, **headers)
    assert response.status_code == 200, response.content
    return response.json()


def test_requests_during_an_outage_keep_their_zones_and_never_call_bigquery(
    bigquery, organizations, api_client, bearer, with_broker, requested
):
    (a,) = organizations("a")
    user = MembershipFactory(organization=a).user
    bigquery.rows = [("a", "EU", "Europe"), ("a", "US", "America")]
    assert services.zone_sync().ok
    headers = bearer(user)
    assert me(api_client, headers)["zones_status"] == "ready"

    bigquery.mode = "error500"
    assert not services.zone_sync().ok
    bigquery.reset_calls()

    for _ in range(20):
        body = me(api_client, headers)
        assert body["zones"] == [{"code": "EU", "name": "Europe"}, {"code": "US", "name": "America"}]
        assert body["zones_status"] == "stale"
    assert bigquery.calls == []
    assert requested == []  # stale because the last run failed: retries and beat handle it


def test_a_missing_snapshot_is_pending_and_requests_do_not_sync(
    bigquery, organizations, api_client, bearer, with_broker, requested
):
    (a,) = organizations("a")
    user = MembershipFactory(organization=a).user
    body = me(api_client, bearer(user))
    assert (body["zones"], body["zones_status"]) == ([], "pending")
    assert bigquery.calls == []
    assert ZoneSyncRun.objects.count() == 0


@pytest.mark.slow
def test_an_overdue_snapshot_enqueues_one_sync_not_one_per_request(
    bigquery, organizations, api_client, bearer, settings, with_broker, requested
):
    (a,) = organizations("a")
    users = [MembershipFactory(organization=a).user for _ in range(3)]
    headers = {user.pk: bearer(user) for user in users}  # sessions first: starting one invalidates
    bigquery.rows = [("a", "EU", "Europe")]
    assert services.zone_sync().ok
    # Make the good snapshot turn overdue in a second: cached contexts are "ready" until then.
    interval = settings.ZONES["SYNC_INTERVAL"]
    almost_overdue = timezone.now() - timedelta(seconds=1.5 * interval - 1.0)
    ZoneSyncRun.objects.update(finished_at=almost_overdue, started_at=almost_overdue)
    context_invalidate(zones=True)
    contexts = [user_context_get(user_id=user.pk) for user in users]
    assert all(c is not None and c.public["zones_status"] == "ready" for c in contexts)
    stale_after = max(c.zones_stale_after or 0 for c in contexts if c is not None)
    time.sleep(max(0.0, stale_after - time.time()) + 0.05)
    bigquery.reset_calls()

    bodies = [me(api_client, headers[user.pk]) for user in users for _ in range(5)]

    assert {body["zones_status"] for body in bodies} == {"stale"}
    assert all(body["zones"] == [{"code": "EU", "name": "Europe"}] for body in bodies)
    time.sleep(0.1)  # the send runs on a background thread
    assert requested == ["overdue"]
    assert bigquery.calls == []


def test_sync_request_without_a_broker_never_syncs_in_the_request(monkeypatch, requested):
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    assert services.zone_sync_request(reason="overdue") is False
    assert requested == [] and ZoneSyncRun.objects.count() == 0


def test_sync_request_for_a_ready_snapshot_sends_nothing_and_frees_the_marker(with_broker, requested):
    now = timezone.now()
    ZoneSyncRun.objects.create(started_at=now, finished_at=now, source="fixture", status="ok")
    assert services.zone_sync_request(reason="overdue") is False
    assert services.zone_sync_request(reason="overdue") is False
    assert requested == []


# -- another process -------------------------------------------------------------------------


def get_me(url: str, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(url + ME, headers={"Authorization": headers["HTTP_AUTHORIZATION"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.services
def test_a_sync_is_seen_by_the_next_request_on_another_process(
    postgres, redis_cache, bigquery, organizations, web_process, bearer
):
    a, b = organizations("a", "b")
    alice, bob = MembershipFactory(organization=a).user, MembershipFactory(organization=b).user
    bigquery.rows = [("a", "EU", "Europe"), ("b", "US", "America")]
    assert services.zone_sync().ok
    # The web process could reach BigQuery: it is configured, and still never calls it.
    web = web_process(
        ZONE_SOURCE="bigquery",
        BIGQUERY_PROJECT="fake-project",
        BIGQUERY_ZONE_TABLE=TABLE,
        BIGQUERY_API_ENDPOINT=bigquery.url,
    )
    alice_headers, bob_headers = bearer(alice), bearer(bob)
    assert get_me(web.url, alice_headers)["zones"] == [{"code": "EU", "name": "Europe"}]
    assert get_me(web.url, bob_headers)["zones"] == [{"code": "US", "name": "America"}]  # both cached now

    bigquery.rows = [("a", "EU", "Europe"), ("a", "AS", "Asia"), ("b", "US", "America")]
    assert services.zone_sync().ok

    body = get_me(web.url, alice_headers)
    assert body["zones"] == [{"code": "AS", "name": "Asia"}, {"code": "EU", "name": "Europe"}]
    assert body["zones_status"] == "ready"

    # An outage: the other process keeps serving the last good zones, marked stale.
    bigquery.mode = "error500"
    assert not services.zone_sync().ok
    bigquery.reset_calls()
    for _ in range(5):
        body = get_me(web.url, alice_headers)
        assert body["zones"] == [{"code": "AS", "name": "Asia"}, {"code": "EU", "name": "Europe"}]
        assert body["zones_status"] == "stale"
        assert get_me(web.url, bob_headers)["zones"] == [{"code": "US", "name": "America"}]
    assert bigquery.calls == []


def test_a_missing_snapshot_asks_for_one_sync_from_fills_only(
    bigquery, organizations, api_client, bearer, with_broker, requested
):
    (a,) = organizations("a")
    users = [MembershipFactory(organization=a).user for _ in range(3)]
    for user in users:
        for _ in range(3):
            assert me(api_client, bearer(user))["zones_status"] == "pending"
    time.sleep(0.1)  # the send runs on a background thread
    assert requested == ["missing"]
    assert bigquery.calls == []
