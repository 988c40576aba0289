"""The admin's Cache page in a real headless Chromium: log in, read the statistics, clear, read the outcome."""

from __future__ import annotations

import sys
import types

import pytest
from django.test import Client
from playwright.sync_api import expect

from cachemgmt.models import CacheAuditEntry
from tests.factories import PASSWORD, UserFactory, permission
from tests.support.browser import chromium_page, screenshots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def queued_zone_sync(monkeypatch):
    """zone_sync_enqueue answering as it does with a broker (the live server shares this process)."""
    try:
        import zones.services as module
    except ImportError:
        module = types.ModuleType("zones.services")
        monkeypatch.setitem(sys.modules, "zones.services", module)
    monkeypatch.setattr(module, "zone_sync_enqueue", lambda: {"status": "queued"}, raising=False)


@pytest.mark.slow
def test_staff_reads_statistics_clears_and_syncs_from_the_admin_cache_page(live_server, chromium, queued_zone_sync):
    staff = UserFactory(is_staff=True, username="ops-admin")
    staff.user_permissions.add(permission("accounts.view_user"))  # the user autocomplete searches users
    member = UserFactory()
    api = Client()
    token_headers = {"HTTP_AUTHORIZATION": f"Bearer {_token(member)}"}
    api.get("/api/me", **token_headers)  # miss and fill
    api.get("/api/me", **token_headers)  # hit
    with chromium_page() as page:
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", staff.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.locator("tr.model-cachepage a").first.click()

        assert page.locator("h1").inner_text() == "Cache"
        hits = int(page.locator("#stats-user_context .hits").inner_text())
        invalidations = int(page.locator("#stats-user_context .invalidations").inner_text())
        assert hits >= 1
        assert page.locator("#cache-backend").inner_text() in {"redis", "locmem"}

        page.select_option("#clear-namespace select[name=namespace]", "user_context")
        page.click("#clear-namespace input[type=submit]")
        assert "Clear the user_context namespace?" in page.locator("#confirm-question").inner_text()
        page.click("#confirm")

        assert page.locator(".messagelist .success").inner_text() == "Cleared: user_context."
        assert int(page.locator("#stats-user_context .invalidations").inner_text()) > invalidations

        assert page.locator("#stats-user_context .hit-ratio").inner_text().endswith(" %")
        assert "The counters and a clear cover every process" in page.locator("#stats-scope").inner_text() or (
            "In-process cache" in page.locator("#stats-scope").inner_text()
        )
        page.screenshot(path=str(screenshots("cache-page")), full_page=True)

        page.click("#clear-user .select2-selection")  # the admin's user autocomplete, by username
        page.locator(".select2-search__field").fill(member.username[:6])
        page.locator(".select2-results__option", has_text=member.username).click()
        # The choice is in the form before it is sent (on a loaded machine select2 lags the click).
        expect(page.locator("#clear-user select")).to_have_value(str(member.pk))
        page.click("#clear-user input[type=submit]")
        assert f"user {member.username} (id {member.pk})" in page.locator("#confirm-question").inner_text()
        page.click("#confirm")
        assert page.locator(".messagelist .success").inner_text() == f"Cleared: user_context of user {member.pk}."

        page.click("#zone-sync input[type=submit]")
        assert "Run a zone sync now?" in page.locator("#confirm-question").inner_text()
        page.click("#confirm")
        assert page.locator(".messagelist .success").inner_text() == "Zone sync: status=queued."
        assert page.locator("#cache-audit tbody tr").count() == 3

    entries = list(CacheAuditEntry.objects.order_by("id").values_list("source", "action", "target", "actor_id"))
    assert entries == [
        ("admin", "clear", "user_context", staff.pk),
        ("admin", "clear", f"user_context:user={member.pk}", staff.pk),
        ("admin", "zone_sync", "zones", staff.pk),
    ]


def test_the_cache_page_refuses_a_clear_without_confirmation(staff_user):
    client = Client()
    client.force_login(staff_user)

    confirm = client.get("/admin/cachemgmt/cachepage/clear/", {"namespace": "zones"})
    assert confirm.status_code == 200
    assert not CacheAuditEntry.objects.exists()  # a GET only asks

    unknown = client.post("/admin/cachemgmt/cachepage/clear/", {"namespace": "user_context", "user_id": 987654})
    assert unknown.status_code == 302
    assert not CacheAuditEntry.objects.exists()


def test_the_cache_page_is_for_staff_only(member):
    client = Client()
    client.force_login(member)
    response = client.get("/admin/cachemgmt/cachepage/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def _token(user) -> str:
    from tests.support.tokens import access_token

    return access_token(user)


@pytest.mark.slow
def test_the_user_and_membership_lists_read_as_a_console(live_server, chromium):
    from tests.factories import MembershipFactory

    root = UserFactory(is_staff=True, is_superuser=True, username="console-root")
    members = [MembershipFactory() for _ in range(3)]
    with chromium_page() as page:
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", root.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.goto(f"{live_server.url}/admin/accounts/user/")
        assert page.locator("th.column-organization").count() == 1 and page.locator("th.column-role").count() == 1
        assert members[0].organization.name in page.locator("#result_list").inner_text()
        assert page.locator("#changelist-filter").get_by_text("By organization").count() == 1
        page.screenshot(path=str(screenshots("admin-users")), full_page=True)
        page.goto(f"{live_server.url}/admin/accounts/membership/")
        page.fill("#searchbar", members[1].user.username)
        page.click("#changelist-search input[type=submit]")
        page.wait_for_url("**/membership/?q=*")
        rows = page.locator("#result_list tbody tr")
        rows.first.wait_for()
        assert rows.count() == 1, page.locator("#content").inner_text()[:1500]
        assert members[1].organization.name in rows.first.inner_text()
        page.screenshot(path=str(screenshots("admin-memberships")), full_page=True)
        page.goto(f"{live_server.url}/admin/")
        assert page.locator("#api-documentation a").count() == 3
        page.screenshot(path=str(screenshots("admin-index")), full_page=True)
