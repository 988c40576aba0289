"""zones_status in the context: ready, pending, stale; an overdue snapshot refills contexts once."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.utils import timezone

from accounts import selectors
from tests.factories import MembershipFactory, ZoneAssignmentFactory
from zones.conf import zones_settings
from zones.models import ZoneSyncRun

pytestmark = pytest.mark.django_db(transaction=True)


def record_run(status: str, age_seconds: float = 0) -> None:
    finished = timezone.now() - timezone.timedelta(seconds=age_seconds)
    ZoneSyncRun.objects.create(started_at=finished, finished_at=finished, source="fixture", status=status, rows=1)


def test_status_follows_the_sync_runs():
    member = MembershipFactory()
    ZoneAssignmentFactory(organization=member.organization)
    assert selectors.user_context_get(user_id=member.user_id).public["zones_status"] == "pending"  # type: ignore[union-attr]
    record_run("ok")
    selectors.cache.deps_bump([selectors.cache.dep_zones_key()])  # what a finished sync does
    assert selectors.user_context_get(user_id=member.user_id).public["zones_status"] == "ready"  # type: ignore[union-attr]
    record_run("failed")
    selectors.cache.deps_bump([selectors.cache.dep_zones_key()])
    context = selectors.user_context_get(user_id=member.user_id)
    assert context is not None
    assert context.public["zones_status"] == "stale"
    assert context.public["zones"], "the last good zones are still served"


def test_snapshot_going_overdue_refills_once_and_asks_for_one_sync(monkeypatch, django_assert_num_queries):
    member = MembershipFactory()
    ZoneAssignmentFactory(organization=member.organization)
    record_run("ok")
    requests: list[str] = []
    monkeypatch.setattr(selectors, "_zones_sync_hook", lambda **kw: requests.append(kw["reason"]))
    assert selectors.user_context_get(user_id=member.user_id).public["zones_status"] == "ready"  # type: ignore[union-attr]

    later = time.time() + 2 * int(zones_settings.SYNC_INTERVAL)
    monkeypatch.setattr(time, "time", lambda: later)

    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        context = selectors.user_context_get(user_id=member.user_id)
    assert context is not None and context.public["zones_status"] == "stale"
    assert requests == ["overdue"]
    with django_assert_num_queries(0):
        again = selectors.user_context_get(user_id=member.user_id)
    assert again is not None and again.public["zones_status"] == "stale"
    assert requests == ["overdue"]  # a cached stale context asks for nothing
