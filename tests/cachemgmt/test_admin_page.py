"""The admin's Cache page as a staff member reads it: percentages, their time zone, a failed sync
with its error and run, a one-user clear checked before it is confirmed."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from accounts.services import profile_update
from cachemgmt.models import CacheAuditEntry
from tests.factories import UserFactory
from zones.models import ZoneSyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> tuple[Client, object]:
    staff = UserFactory(is_staff=True)
    client = Client()
    client.force_login(staff)
    return client, staff


def test_times_are_in_the_staff_members_time_zone(staff_client):
    client, staff = staff_client
    profile_update(user_id=staff.pk, timezone="Asia/Tokyo")
    html = client.get("/admin/cachemgmt/cachepage/").content.decode()
    assert "(Asia/Tokyo)" in html


def test_a_failed_sync_shows_its_error_and_links_its_run(staff_client):
    client, _ = staff_client
    now = timezone.now()
    run = ZoneSyncRun.objects.create(
        started_at=now, finished_at=now, source="bigquery", status="failed", error="table not found: zones"
    )
    html = client.get("/admin/cachemgmt/cachepage/").content.decode()
    assert "<strong>failed</strong>" in html and "table not found: zones" in html
    assert f'href="/admin/zones/zonesyncrun/{run.pk}/change/"' in html


def test_a_one_user_clear_names_the_user_before_it_is_confirmed(staff_client):
    client, _ = staff_client
    member = UserFactory(username="carol")
    confirm = client.get("/admin/cachemgmt/cachepage/clear/", {"namespace": "user_context", "user": member.pk})
    assert "Clear the cached context of user carol (id" in confirm.content.decode()
    assert f'name="user_id" value="{member.pk}"' in confirm.content.decode()
    unknown = client.get("/admin/cachemgmt/cachepage/clear/", {"namespace": "user_context", "user": 987654})
    assert unknown.status_code == 302  # back to the page with the error, nothing asked, nothing cleared
    assert not CacheAuditEntry.objects.exists()


def test_hit_ratios_read_as_percentages(staff_client):
    client, _ = staff_client
    html = client.get("/admin/cachemgmt/cachepage/").content.decode()
    assert 'class="hit-ratio">0.0 %<' in html


def test_the_one_user_clear_without_a_user_clears_nothing_and_says_why(staff_client):
    client, _ = staff_client
    response = client.get("/admin/cachemgmt/cachepage/clear/", {"namespace": "user_context", "scope": "user"})
    assert response.status_code == 302  # back to the page, no confirmation of a namespace clear
    page = client.get("/admin/cachemgmt/cachepage/").content.decode()
    assert "pick a user to clear one user" in page
