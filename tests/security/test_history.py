"""History is read-only: revocations, sync runs and audit entries, in the admin and (revocations) in the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AccessAuditEntry, RevokedToken, User
from cachemgmt.models import CacheAuditEntry
from tests.factories import PASSWORD, MembershipFactory, UserFactory
from zones.models import ZoneSyncRun


def superuser_client() -> Client:
    root = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username=root.username, password=PASSWORD)
    return client


def logged_out_token(user: User) -> str:
    client = APIClient()
    token = client.post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json")
    token = token.json()["access_token"]
    assert client.post("/api/auth/logout", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204
    return token


def me_status(token: str) -> int:
    return APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code


def revocation():
    return RevokedToken.objects.create(jti="j1", user=UserFactory(), expires_at=timezone.now())


def sync_run():
    return ZoneSyncRun.objects.create(started_at=timezone.now(), source="fixture")


def cache_audit():
    return CacheAuditEntry.objects.create(actor_label="x", source="api", action="clear", target="t", result="r")


def access_audit():
    return AccessAuditEntry.objects.create(actor_label="x", target="t", change="c")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make", "url"),
    [
        (revocation, "accounts/revokedtoken"),
        (sync_run, "zones/zonesyncrun"),
        (cache_audit, "cachemgmt/cacheauditentry"),
        (access_audit, "accounts/accessauditentry"),
    ],
)
def test_no_one_changes_or_deletes_history_in_the_admin(make, url):
    record = make()
    client = superuser_client()
    assert client.get(f"/admin/{url}/").status_code == 200  # visible
    assert client.post(f"/admin/{url}/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = client.post(f"/admin/{url}/", {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"})
    assert bulk.status_code in {200, 302}  # the action does not exist for this model
    assert type(record).objects.filter(pk=record.pk).exists()
    page = client.get(f"/admin/{url}/{record.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.post(f"/admin/{url}/{record.pk}/change/", {}).status_code == 403
    assert client.get(f"/admin/{url}/add/").status_code == 403


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_live_revocation_deleted_with_raw_sql_is_refused_and_the_token_stays_revoked(postgres):
    user = MembershipFactory().user
    token = logged_out_token(user)
    assert me_status(token) == 401
    refused = pytest.raises(DatabaseError, match="kept until its token expires")
    with refused, transaction.atomic(), connection.cursor() as cursor:  # refused at commit
        cursor.execute("DELETE FROM accounts_revokedtoken WHERE user_id = %s", [user.pk])
    with pytest.raises(DatabaseError, match="never changed"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_revokedtoken SET jti = 'other' WHERE user_id = %s", [user.pk])
    with pytest.raises(DatabaseError, match="kept until its token expires"):
        RevokedToken.objects.filter(user=user).delete()  # the ORM, outside any explicit transaction
    assert RevokedToken.objects.filter(user=user).count() == 1
    assert me_status(token) == 401


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_expired_revocations_and_deleted_users_records_can_go(postgres):
    user = MembershipFactory().user
    old = RevokedToken.objects.create(jti="expired", user=user, expires_at=timezone.now() - timedelta(hours=1))
    RevokedToken.objects.filter(pk=old.pk).delete()
    assert not RevokedToken.objects.filter(pk="expired").exists()
    logged_out_token(user)
    User.objects.filter(pk=user.pk).delete()  # its revocations go with it, in the same transaction
    assert not RevokedToken.objects.filter(user_id=user.pk).exists()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_protection_cannot_be_switched_off_by_a_session(postgres):
    """django-pgtrigger's triggers obey a session's ``pgtrigger.ignore``; these are plain ones."""
    user = MembershipFactory().user
    token = logged_out_token(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'accounts_revokedtoken'::regclass")
        names = [row[0] for row in cursor.fetchall()]
    refused = pytest.raises(DatabaseError, match="kept until its token expires")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pgtrigger.ignore', %s, true)", ["{" + ",".join(names) + "}"])
        cursor.execute("DELETE FROM accounts_revokedtoken WHERE user_id = %s", [user.pk])
    assert me_status(token) == 401


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_lowering_a_token_version_is_refused(postgres):
    user = MembershipFactory().user
    client = APIClient()
    token = client.post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json")
    token = token.json()["access_token"]
    client.post("/api/auth/logout", {"all": True}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")
    with pytest.raises(DatabaseError, match="never decreases"):
        User.objects.filter(pk=user.pk).update(token_version=0)
    assert me_status(token) == 401


@pytest.mark.django_db(transaction=True)
def test_a_live_revocation_deleted_behind_the_admins_back_never_revives_its_token():
    """On either database: PostgreSQL refuses the deletion; SQLite lets it happen and ends every
    token of the user instead (fail closed)."""
    user = MembershipFactory().user
    token = logged_out_token(user)
    version = User.objects.get(pk=user.pk).token_version
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM accounts_revokedtoken WHERE user_id = %s", [user.pk])
    except DatabaseError:
        assert connection.vendor == "postgresql"
    else:
        assert connection.vendor == "sqlite"
        # Every token of the user ended: its version moved past the one they carry.
        assert User.objects.get(pk=user.pk).token_version > version
    assert me_status(token) == 401
    User.objects.filter(pk=user.pk).update(token_version=F("token_version") + 1)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_user SET token_version = token_version - 1 WHERE id = %s", [user.pk])
