"""Change capture: a committed write of any origin records the dependency it touches; a rolled-back one, nothing."""

from __future__ import annotations

import json
import subprocess

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from accounts.models import Membership, Profile, Role, User
from cachemgmt.models import DependencyChange
from tests.factories import MembershipFactory, OrganizationFactory, RoleFactory, UserFactory, permission
from zones.models import Zone, ZoneAssignment

pytestmark = pytest.mark.django_db(transaction=True)


def changes_after(mark: int) -> set[tuple[str, int]]:
    return set(DependencyChange.objects.filter(id__gt=mark).values_list("kind", "ident"))


def last_id() -> int:
    return DependencyChange.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_queryset_update_records_the_user():
    user = MembershipFactory().user
    mark = last_id()
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert changes_after(mark) == {("user", user.pk)}


def test_a_login_timestamp_alone_records_nothing():
    user = UserFactory()
    mark = last_id()
    User.objects.filter(pk=user.pk).update(last_login="2026-01-01T00:00:00Z")
    User.objects.filter(pk=user.pk).update(email=user.email)  # no value changed
    assert changes_after(mark) == set()


def test_bulk_writes_record_every_row_they_touch():
    members = [MembershipFactory() for _ in range(3)]
    role = RoleFactory()
    mark = last_id()
    profiles = list(Profile.objects.filter(user__in=[m.user for m in members]))
    for profile in profiles:
        profile.display_name = "renamed"
    Profile.objects.bulk_update(profiles, ["display_name"])
    through = Role.permissions.through
    through.objects.bulk_create([through(role_id=role.pk, permission_id=permission("zones.view_zone").pk)])
    assert changes_after(mark) == {("user", m.user_id) for m in members} | {("role", role.pk)}

    newcomer = UserFactory()
    mark = last_id()
    through.objects.filter(role_id=role.pk).delete()
    Membership.objects.filter(pk=members[0].pk).update(user=newcomer)  # moved: both users
    assert changes_after(mark) == {("role", role.pk), ("user", members[0].user_id), ("user", newcomer.pk)}


def test_groups_permissions_zones_and_assignments():
    group = Group.objects.create(name="g")
    org = OrganizationFactory()
    zone = Zone.objects.create(code="Z1", name="Zone 1")
    mark = last_id()
    group.permissions.add(permission("zones.view_zone"))
    ZoneAssignment.objects.create(organization=org, zone=zone)
    Zone.objects.filter(pk=zone.pk).update(name="Renamed")
    assert changes_after(mark) == {("permissions", 0), ("organization", org.pk), ("zones", 0)}


@pytest.mark.slow  # starts psql
def test_raw_sql_through_django_and_through_psql():
    user = MembershipFactory().user
    mark = last_id()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_profile SET locale = 'fr' WHERE user_id = %s", [user.pk])
    assert changes_after(mark) == {("user", user.pk)}
    if connection.vendor != "postgresql":
        return
    mark = last_id()
    settings = connection.settings_dict
    subprocess.run(
        ["psql", "-h", settings["HOST"] or "127.0.0.1", "-p", str(settings["PORT"] or 5432), "-U", settings["USER"],
         "-d", settings["NAME"], "-v", "ON_ERROR_STOP=1", "-c",
         f"UPDATE accounts_user SET is_active = false WHERE id = {int(user.pk)}"],  # noqa: S608 - an int
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    assert changes_after(mark) == {("user", user.pk)}


def test_a_rolled_back_write_records_nothing():
    user = UserFactory()
    mark = last_id()
    with pytest.raises(RuntimeError), transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
        raise RuntimeError("abandon")
    assert changes_after(mark) == set()


@pytest.mark.services
def test_a_statement_touching_many_rows_records_one_coarse_change(postgres):
    """One statement, one INSERT of what it touched; past the limit, one "all" change."""
    from cachemgmt.capture import COARSE_LIMIT

    users = User.objects.bulk_create([User(username=f"bulk{i}") for i in range(COARSE_LIMIT + 1)])
    mark = last_id()
    User.objects.filter(pk__in=[u.pk for u in users[:3]]).update(first_name="three")
    assert changes_after(mark) == {("user", u.pk) for u in users[:3]}
    mark = last_id()
    User.objects.filter(username__startswith="bulk").update(first_name="all of them")
    assert changes_after(mark) == {("all", 0)}


@pytest.mark.services
def test_capture_is_installed_on_every_table_a_context_reads(postgres):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname LIKE 'pgtrigger_capture_%'"
        )
        tables = {row[0] for row in cursor.fetchall()}
    assert tables == {
        "accounts_user", "accounts_profile", "accounts_membership", "accounts_organization", "accounts_role",
        "accounts_role_permissions", "auth_permission", "auth_group", "accounts_user_groups",
        "auth_group_permissions", "accounts_user_user_permissions", "zones_zone", "zones_zoneassignment",
        "accounts_session", "accounts_revokedtoken", "zones_zonesyncrun", "django_content_type",
    }  # fmt: skip
    with connection.cursor() as cursor:  # insert, update and delete on each
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrigger_capture_%'")
        assert cursor.fetchone()[0] == 3 * len(tables)


def test_loaddata_records_what_it_writes(tmp_path):
    from django.core.management import call_command

    org = OrganizationFactory()
    fixture = tmp_path / "org.json"
    record = {"model": "accounts.organization", "pk": org.pk, "fields": {"name": "Loaded", "slug": org.slug}}
    fixture.write_text(json.dumps([record]))
    mark = last_id()
    call_command("loaddata", str(fixture), verbosity=0)
    assert changes_after(mark) == {("organization", org.pk)}


def test_sessions_record_their_start_and_end_but_not_a_refresh():
    """A context lists its user's live sessions: starting or ending one is a change to it, a
    refresh (new hash, sliding expiry, last use) is not."""
    from django.utils import timezone

    from accounts.sessions import session_create, session_refresh

    user = UserFactory()
    mark = last_id()
    session, refresh_token = session_create(
        user_id=user.pk, token_version=user.token_version, device="d", ip=None, now=timezone.now()
    )
    assert changes_after(mark) == {("user", user.pk)}
    mark = last_id()
    session_refresh(refresh_token=refresh_token)
    assert changes_after(mark) == set()
    with connection.cursor() as cursor:  # another writer ends it
        cursor.execute(
            "UPDATE accounts_session SET ended_at = %s, end_reason = 'elsewhere' WHERE id = %s",
            [timezone.now(), session.pk.hex if connection.vendor == "sqlite" else session.pk],
        )
    assert changes_after(mark) == {("user", user.pk)}
