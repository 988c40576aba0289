"""History is read-only: sessions, sync runs and audit entries, in the admin and (sessions) in the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AccessAuditEntry, RetiredRefreshToken, Session, User
from accounts.selectors import user_context_load
from cachemgmt.models import CacheAuditEntry
from tests.factories import PASSWORD, MembershipFactory, UserFactory
from zones.models import ZoneSyncRun


def superuser_client() -> Client:
    root = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username=root.username, password=PASSWORD)
    return client


def logged_out_token(user: User) -> str:
    """The access token of a session that was refreshed once (so it has a retired refresh token), then ended."""
    client = APIClient()
    login = client.post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json")
    refreshed = client.post("/api/auth/refresh", {"refresh_token": login.json()["refresh_token"]}, format="json")
    token = refreshed.json()["access_token"]
    assert client.post("/api/auth/logout", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204
    return token


def me_status(token: str) -> int:
    return APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code


def session():
    from accounts.sessions import session_create

    user = UserFactory()
    return session_create(user_id=user.pk, token_version=0, device="phone", ip="10.0.0.1", now=timezone.now())[0]


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
        (session, "accounts/session"),
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
def test_an_ended_session_cannot_be_revived_or_deleted_by_any_writer(postgres):
    user = MembershipFactory().user
    token = logged_out_token(user)
    assert me_status(token) == 401
    with pytest.raises(DatabaseError, match="ended session never changes"), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_session SET ended_at = NULL WHERE user_id = %s", [user.pk])
    with pytest.raises(DatabaseError, match="ended session never changes"):
        Session.objects.filter(user=user).update(end_reason="")
    refused = pytest.raises(DatabaseError, match="kept until it has expired")
    with refused, transaction.atomic(), connection.cursor() as cursor:  # refused at commit
        cursor.execute(
            "DELETE FROM accounts_retiredrefreshtoken WHERE session_id IN "
            "(SELECT id FROM accounts_session WHERE user_id = %s)",
            [user.pk],
        )
        cursor.execute("DELETE FROM accounts_session WHERE user_id = %s", [user.pk])
    with pytest.raises(DatabaseError, match="kept as long as its session"), transaction.atomic():
        RetiredRefreshToken.objects.filter(session__user=user).delete()
    assert Session.objects.filter(user=user, ended_at__isnull=False).count() == 1
    assert me_status(token) == 401


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_what_a_session_is_never_changes(postgres):
    """Another user, an older token version or a longer life would make an ended session's
    tokens someone else's, or a live one outlast its limits."""
    user, other = MembershipFactory().user, UserFactory()
    login_body = (
        APIClient().post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json").json()
    )
    for change in (f"user_id = {other.pk}", "token_version = token_version + 1",
                   "max_expires_at = max_expires_at + interval '1 year'", "created_at = now()"):  # fmt: skip
        with pytest.raises(DatabaseError, match="never change"), connection.cursor() as cursor:
            cursor.execute(f"UPDATE accounts_session SET {change} WHERE id = %s", [login_body["session_id"]])  # noqa: S608
    with pytest.raises(DatabaseError, match="within_max_age"):
        Session.objects.filter(pk=login_body["session_id"]).update(expires_at=F("max_expires_at") + timedelta(days=1))
    assert me_status(login_body["access_token"]) == 200


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_expired_sessions_and_deleted_users_records_can_go(postgres):
    user = MembershipFactory().user
    logged_out_token(user)
    # An expired session (made so by the clock of its creation, not by an update) may be pruned.
    from accounts.sessions import session_create, sessions_prune

    long_ago = timezone.now() - timedelta(days=400)
    expired, _ = session_create(user_id=user.pk, token_version=0, device="old", ip=None, now=long_ago)
    assert sessions_prune() == 1
    assert not Session.objects.filter(pk=expired.pk).exists()
    assert Session.objects.filter(user=user).count() == 1  # the logged-out one is kept until it expires
    User.objects.filter(pk=user.pk).delete()  # its sessions go with it, in the same transaction
    assert not Session.objects.filter(user_id=user.pk).exists()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_protection_cannot_be_switched_off_by_a_session(postgres):
    """django-pgtrigger's triggers obey a session's ``pgtrigger.ignore``; these are plain ones."""
    user = MembershipFactory().user
    token = logged_out_token(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'accounts_session'::regclass")
        names = [row[0] for row in cursor.fetchall()]
    refused = pytest.raises(DatabaseError, match="ended session never changes")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pgtrigger.ignore', %s, true)", ["{" + ",".join(names) + "}"])
        cursor.execute("UPDATE accounts_session SET ended_at = NULL WHERE user_id = %s", [user.pk])
    assert me_status(token) == 401


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_lowering_a_token_version_is_refused(postgres):
    user = MembershipFactory().user
    User.objects.filter(pk=user.pk).update(token_version=F("token_version") + 1)
    with pytest.raises(DatabaseError, match="never decreases"):
        User.objects.filter(pk=user.pk).update(token_version=0)


@pytest.mark.django_db(transaction=True)
def test_an_ended_session_stays_ended_on_either_database():
    """PostgreSQL and SQLite both refuse to revive a session; deleting a live one ends it."""
    user = MembershipFactory().user
    token = logged_out_token(user)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_session SET ended_at = NULL WHERE user_id = %s", [user.pk])
    assert me_status(token) == 401
    live = APIClient().post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json")
    live_token = live.json()["access_token"]
    assert me_status(live_token) == 200
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM accounts_retiredrefreshtoken")
            cursor.execute("DELETE FROM accounts_session WHERE id = %s", [live.json()["session_id"].replace("-", "")
                           if connection.vendor == "sqlite" else live.json()["session_id"]])  # fmt: skip
    except DatabaseError:
        assert connection.vendor == "postgresql"
    else:
        assert connection.vendor == "sqlite"
        # Read from the database (the carrier brings this to caches; tests/cachemgmt): a context
        # lists only sessions that exist, so the token of a deleted one is refused.
        context = user_context_load(user_id=user.pk)
        assert context is not None and live.json()["session_id"] not in context.session_ids
    User.objects.filter(pk=user.pk).update(token_version=F("token_version") + 1)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_user SET token_version = token_version - 1 WHERE id = %s", [user.pk])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "change",
    [
        pytest.param("password", id="password"),
        pytest.param("deactivate", id="deactivation"),
    ],
)
def test_a_password_change_or_deactivation_by_any_writer_ends_every_session(change):
    user = MembershipFactory().user
    client = APIClient()
    bodies = [
        client.post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json").json()
        for _ in range(2)
    ]
    with connection.cursor() as cursor:  # raw SQL: no signal, no service
        if change == "password":
            cursor.execute("UPDATE accounts_user SET token_version = token_version + 1 WHERE id = %s", [user.pk])
        else:
            cursor.execute("UPDATE accounts_user SET is_active = %s WHERE id = %s", [False, user.pk])
    reasons = set(Session.objects.filter(user=user).values_list("end_reason", flat=True))
    assert reasons == {"password" if change == "password" else "deactivated"}
    if change == "deactivate":
        User.objects.filter(pk=user.pk).update(is_active=True)  # reactivated: the sessions stay ended
    refresh = client.post("/api/auth/refresh", {"refresh_token": bodies[0]["refresh_token"]}, format="json")
    assert refresh.status_code == 401
