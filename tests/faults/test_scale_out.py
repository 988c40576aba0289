"""Two web processes, a Celery worker and beat sharing PostgreSQL, Redis and a broker: invalidations
and statistics hold across all of them."""

from __future__ import annotations

import pytest

from accounts import services
from accounts.models import Organization
from tests.factories import MembershipFactory, UserFactory
from tests.support.bigquery import FakeBigQuery
from tests.support.faults import http, wait_for
from tests.support.tokens import access_token
from zones.models import ZoneSyncRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]

TABLE = "fake-project.zones_ds.zone_mappings"
INTERVAL = 2  # seconds between beat's syncs (ZONE_SYNC_INTERVAL)


def me(port: int, token: str) -> dict:
    answer = http(port, "GET", "/api/me", token=token)
    assert answer.status == 200, answer
    return answer.json()


def zone_codes(port: int, token: str) -> list[str]:
    return [zone["code"] for zone in me(port, token)["zones"]]


STATS_CALLS = [0]


def counters(port: int, token: str) -> dict:
    STATS_CALLS[0] += 1  # each call's own authentication is one lookup too
    answer = http(port, "GET", "/api/admin/cache/stats", token=token)
    assert answer.status == 200, answer
    return answer.json()["namespaces"]


def test_invalidation_and_statistics_across_web_worker_and_beat(
    postgres, spare_redis, webs, celery_process, monkeypatch, hardening_report
):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    broker = spare_redis()
    organization = Organization.objects.create(slug="scale", name="Scale")
    member = MembershipFactory(organization=organization)
    staff = UserFactory(is_staff=True)
    token = access_token(member.user)
    staff_token = access_token(staff)
    with FakeBigQuery(page_size=50) as bigquery:
        bigquery.rows = [("scale", "EU-1", "Europe 1")]
        env = {
            "CELERY_BROKER_URL": broker.url,
            "ZONE_SYNC_INTERVAL": str(INTERVAL),
            "ZONE_SOURCE": "bigquery",
            "BIGQUERY_PROJECT": "fake-project",
            "BIGQUERY_ZONE_TABLE": TABLE,
            "BIGQUERY_API_ENDPOINT": bigquery.url,
        }
        a, b = webs(2, workers=1, **env)
        worker = celery_process("worker", **env)
        beat = celery_process("beat", **env)
        try:
            # The worker's start-up sync, then beat's: the zones reach contexts cached by both web processes.
            wait_for(lambda: zone_codes(a.port, token) == ["EU-1"], timeout=40, what="first sync")
            assert zone_codes(b.port, token) == ["EU-1"]
            bigquery.rows = [("scale", "EU-1", "Europe 1"), ("scale", "US-2", "US 2")]
            wait_for(lambda: zone_codes(b.port, token) == ["EU-1", "US-2"], timeout=10 * INTERVAL, what="beat sync")
            assert zone_codes(a.port, token) == ["EU-1", "US-2"]
        except AssertionError:
            raise AssertionError(worker.log.read_text()[-2000:] + beat.log.read_text()[-2000:]) from None
        syncs = ZoneSyncRun.objects.filter(status="ok").count()

        # A write here is seen at once through both web processes.
        services.profile_update(user_id=member.user_id, display_name="Scaled Out")
        assert me(a.port, token)["user"]["display_name"] == me(b.port, token)["user"]["display_name"] == "Scaled Out"

        # Counters: every lookup of every process lands in the shared statistics.
        before = counters(a.port, staff_token)
        STATS_CALLS[0] = 0
        sent_a, sent_b = 30, 20
        for _ in range(sent_a):
            me(a.port, token)
        for _ in range(sent_b):
            me(b.port, token)

        def lookups(stats: dict, namespace: str = "user_context") -> int:
            return stats[namespace]["hits"] + stats[namespace]["misses"]

        # Flushed within seconds by each process.
        wait_for(
            lambda: lookups(counters(b.port, staff_token)) - lookups(before) - STATS_CALLS[0] >= sent_a + sent_b,
            timeout=15,
            what="counters of both web processes",
        )
        after = counters(b.port, staff_token)
        delta = lookups(after) - lookups(before) - STATS_CALLS[0]

        # Logout through one process ends the token on the other.
        assert http(a.port, "POST", "/api/auth/logout", token=token).status == 204
        assert http(b.port, "GET", "/api/me", token=token).status == 401
    hardening_report(
        processes="2 gunicorn + 1 worker + 1 beat",
        syncs_ok=syncs,
        lookups_sent=sent_a + sent_b,
        lookups_counted=delta,
        zones_namespace=after["zones"],
    )
    assert syncs >= 2
    # Both processes' lookups (more than either alone); at most two per request (an overdue
    # snapshot's refill looks the entry up again).
    assert sent_a + sent_b <= delta <= 2 * (sent_a + sent_b)
    assert lookups(after, "zones") > 0  # counted by the worker (zone cache refills after each sync)
