"""The broker stopped under load: requests unaffected, and the syncs asked for run once it is back."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import Organization
from tests.factories import UserFactory
from tests.support.faults import CommittedState, Traffic, http, wait_for
from tests.support.tokens import access_token
from zones.models import ZoneSyncRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


def runs() -> int:
    return ZoneSyncRun.objects.exclude(status="running").count()


def test_broker_stopped_under_load_then_queued_syncs_run(postgres, spare_redis, webs, celery_process, hardening_report):
    broker = spare_redis(persistent=True)  # keeps its queue across a clean stop and start
    for slug in ("acme", "globex", "initech"):  # the bundled fixture's organizations
        Organization.objects.create(slug=slug, name=slug.title())
    now = timezone.now()
    ZoneSyncRun.objects.create(started_at=now, finished_at=now, source="fixture", status="ok")  # no preload
    state = CommittedState(users=8)
    staff = UserFactory(is_staff=True)
    staff_token = access_token(staff)
    (web,) = webs(1, workers=2, CELERY_BROKER_URL=broker.url)
    before = runs()
    with Traffic(state, [web.port], readers=3, writers=1) as traffic:
        traffic.run_for(1.0)
        queued = http(web.port, "POST", "/api/admin/zones/sync", token=staff_token)  # no worker yet: waits
        traffic.phase = "broker down"
        broker.shutdown()
        traffic.run_for(0.5)
        health = http(web.port, "GET", "/health")
        during = http(web.port, "POST", "/api/admin/zones/sync", token=staff_token)  # resent once it is back
        traffic.run_for(1.5)
        traffic.phase = "broker back"
        broker.start()
        worker = celery_process("worker", CELERY_BROKER_URL=broker.url)
        traffic.run_for(1.0)
    tally = traffic.stop()
    try:
        wait_for(lambda: runs() - before >= 2, timeout=40, what="both syncs asked for")
    except AssertionError:
        raise AssertionError(worker.log.read_text()[-3000:]) from None
    hardening_report(
        **tally.figures(),
        sync_before=(queued.status, round(queued.seconds * 1000)),
        sync_during=(during.status, round(during.seconds * 1000)),
        health_during=(health.status, health.json()["status"], round(health.seconds * 1000)),
        syncs_run=runs() - before,
    )
    assert tally.failed == 0 and tally.stale == 0, tally.samples
    assert set(tally.statuses) == {200}
    assert tally.worst_by_phase["broker down"] < 2.0
    assert queued.status == during.status == 202 and during.json() == {"status": "queued"}
    # Answered while the broker was still down (it restarts after): one publish attempt, the
    # resend is left to a background thread.
    assert during.seconds < 5.0
    assert health.status == 200 and health.json()["checks"]["broker"]["status"] == "down"
    assert ZoneSyncRun.objects.filter(status="ok").count() - 1 == runs() - before == 2
