"""Reads: an organization's zones through the cache, and the snapshot state /health reports."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import OrganizationFactory, ZoneAssignmentFactory, ZoneFactory
from zones.models import ZoneSyncRun
from zones.selectors import organization_zones_get, zone_snapshot_state

pytestmark = pytest.mark.django_db(transaction=True)


def test_organization_zones_are_sorted_and_cached(django_assert_num_queries):
    org = OrganizationFactory()
    ZoneAssignmentFactory(organization=org, zone=ZoneFactory(code="US", name="America"))
    ZoneAssignmentFactory(organization=org, zone=ZoneFactory(code="EU", name="Europe"))
    ZoneAssignmentFactory(zone=ZoneFactory(code="XX", name="Elsewhere"))
    expected = [{"code": "EU", "name": "Europe"}, {"code": "US", "name": "America"}]

    with django_assert_num_queries(1):
        assert organization_zones_get(organization_id=org.pk) == expected
    with django_assert_num_queries(0):
        assert organization_zones_get(organization_id=org.pk) == expected


def test_an_organization_without_zones_is_cached_as_empty(django_assert_num_queries):
    org = OrganizationFactory()
    with django_assert_num_queries(1):
        assert organization_zones_get(organization_id=org.pk) == []
    with django_assert_num_queries(0):
        assert organization_zones_get(organization_id=org.pk) == []


def test_admin_edits_reach_cached_organization_zones(django_assert_num_queries):
    org = OrganizationFactory()
    zone = ZoneFactory(code="EU", name="Europe")
    assert organization_zones_get(organization_id=org.pk) == []

    ZoneAssignmentFactory(organization=org, zone=zone)  # post_save: the organization's key
    assert organization_zones_get(organization_id=org.pk) == [{"code": "EU", "name": "Europe"}]

    zone.name = "Europa"
    zone.save()  # post_save: the global zones key
    assert organization_zones_get(organization_id=org.pk) == [{"code": "EU", "name": "Europa"}]


def run(status: str, *, age: float, error: str = "") -> ZoneSyncRun:
    at = timezone.now() - timedelta(seconds=age)
    return ZoneSyncRun.objects.create(
        started_at=at, finished_at=None if status == "running" else at, source="fixture", status=status, error=error
    )


def test_snapshot_state_is_pending_before_any_good_sync():
    state = zone_snapshot_state()
    assert (state.status, state.last_ok_at, state.age_seconds, state.missing) == ("pending", None, None, True)
    run("failed", age=10, error="boom")
    state = zone_snapshot_state()
    assert (state.status, state.last_run_status, state.last_error) == ("pending", "failed", "boom")


def test_snapshot_state_is_ready_after_a_recent_good_sync(settings):
    run("ok", age=60)
    run("running", age=1)
    state = zone_snapshot_state()
    assert (state.status, state.last_run_status, state.running, state.missing) == ("ready", "ok", True, False)
    assert 59 <= (state.age_seconds or 0) <= 120
    assert state.as_dict()["status"] == "ready"


def test_snapshot_state_is_stale_when_overdue_or_after_a_failure(settings):
    interval = settings.ZONES["SYNC_INTERVAL"]
    run("ok", age=1.5 * interval + 1)
    assert zone_snapshot_state().status == "stale"
    ZoneSyncRun.objects.all().delete()
    run("ok", age=120)
    run("failed", age=60, error="HTTP 500")
    state = zone_snapshot_state()
    assert (state.status, state.last_error) == ("stale", "HTTP 500")


def test_snapshot_state_takes_an_injected_clock():
    run("ok", age=0)
    later = timezone.now() + timedelta(days=30)
    assert zone_snapshot_state(now=lambda: later).status == "stale"
