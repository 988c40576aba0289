"""seed_demo and start-up configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Membership, User
from tests.support.services import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_prints_credentials_and_is_idempotent(settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", "--users", "4", "--password", "pw-for-demo-1", stdout=out)
    text = out.getvalue()
    assert "admin" in text and "user4" in text and "pw-for-demo-1" in text
    counts = (User.objects.count(), Membership.objects.count())
    call_command("seed_demo", "--users", "4", "--password", "pw-for-demo-1", stdout=StringIO())
    assert (User.objects.count(), Membership.objects.count()) == counts
    assert Membership.objects.filter(is_active=True).count() == 5
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.check_password("pw-for-demo-1")


@pytest.mark.parametrize("args", [["--users", "-1"], ["--password", "short"]])
def test_seed_demo_refuses_bad_arguments(args, settings):
    settings.DEBUG = True
    with pytest.raises(CommandError):
        call_command("seed_demo", *args, stdout=StringIO())


def test_seed_demo_refuses_to_run_with_debug_off_unless_told(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=1 only"):
        call_command("seed_demo", stdout=StringIO())
    assert not User.objects.exists()
    call_command("seed_demo", "--users", "1", "--allow-production", stdout=StringIO())
    assert User.objects.filter(username="admin").exists()


def test_seed_demo_never_changes_an_existing_user_or_snapshot_without_a_flag(settings):
    from tests.factories import UserFactory
    from zones.models import ZoneAssignment, ZoneSyncRun

    settings.DEBUG = True
    from accounts.models import Organization, Role

    owner = UserFactory(username="admin", is_staff=False, is_superuser=False)
    Organization.objects.create(slug="acme", name="Acme Corp (ours)", is_active=False)
    Role.objects.create(name="viewer")  # no grants, on purpose
    owner.set_password("the owner's own password")
    owner.save()
    call_command("seed_demo", "--users", "1", stdout=StringIO())  # a first snapshot is synced
    runs = ZoneSyncRun.objects.count()
    out = StringIO()
    call_command("seed_demo", "--users", "1", stdout=out)
    owner.refresh_from_db()
    assert owner.check_password("the owner's own password") and not owner.is_superuser
    acme = Organization.objects.get(slug="acme")
    assert (acme.name, acme.is_active) == ("Acme Corp (ours)", False)
    assert not Role.objects.get(name="viewer").permissions.exists()
    assert "admin        (existing user: left unchanged)" in out.getvalue()
    assert "an existing snapshot is kept" in out.getvalue() and ZoneSyncRun.objects.count() == runs
    assignments = ZoneAssignment.objects.count()
    call_command("seed_demo", "--users", "1", "--reset-existing", "--replace-zones", stdout=StringIO())
    owner.refresh_from_db()
    assert owner.check_password("demo-pass-2026") and owner.is_superuser
    assert ZoneSyncRun.objects.count() == runs + 1 and ZoneAssignment.objects.count() == assignments


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USER_CONTEXT_TTL", "soon"),
        ("ZONE_SOURCE", "oracle"),
        ("REDIS_URL", "http://nope"),
        ("DATABASE_URL", "mysql://x"),
        ("DEBUG", "perhaps"),
        ("DB_MAX_CONNECTIONS", "0"),
        ("SECRET_KEY", ""),
        ("REDIS_SENTINELS", "sentinel-without-port"),
        ("DB_POOLER", "session"),
        ("TOKEN_SIGNING_KEYS", "k1:too-short"),
        ("REFRESH_REUSE_LEEWAY", "60"),
    ],
)
@pytest.mark.slow
def test_bad_configuration_stops_start_up_with_one_line_naming_the_variable(variable, value):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"SECRET_KEY": "x" * 50, "DEBUG": "0", variable: value})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


@pytest.mark.slow
def test_a_transaction_pooler_without_a_direct_url_stops_start_up():
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"SECRET_KEY": "x" * 50, "DEBUG": "0", "DB_POOLER": "transaction"})
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:6432/authctx"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "DATABASE_DIRECT_URL" in lines[0]


def _login(user) -> dict:
    from rest_framework.test import APIClient

    return APIClient().post("/api/auth/login", {"username": user.username, "password": "pw"}, format="json").json()


@pytest.fixture
def two_users():
    from tests.factories import MembershipFactory

    users = [MembershipFactory().user for _ in range(2)]
    for user in users:
        user.set_password("pw")
        user.save()
    return users


def test_revoke_tokens_for_one_user_ends_their_sessions_and_says_how_many(two_users):
    from rest_framework.test import APIClient

    from accounts.models import AccessAuditEntry

    alice, bob = two_users
    alice_bodies, bob_body = [_login(alice), _login(alice)], _login(bob)
    out = StringIO()
    call_command("revoke_tokens", "--user", alice.username, stdout=out)
    assert out.getvalue().startswith(f"Ended 2 sessions of {alice.username}")
    me = APIClient().get
    for body in alice_bodies:
        assert me("/api/me", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}").status_code == 401
    assert me("/api/me", HTTP_AUTHORIZATION=f"Bearer {bob_body['access_token']}").status_code == 200
    assert AccessAuditEntry.objects.get(target=f"user {alice.username}").actor_label == "system"


def test_revoke_tokens_all_is_the_incident_switch(two_users):
    from rest_framework.test import APIClient

    bodies = [_login(user) for user in two_users]
    out = StringIO()
    call_command("revoke_tokens", "--all", stdout=out)
    assert out.getvalue().startswith("Ended 2 sessions of every user")
    for body in bodies:
        assert APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}").status_code == 401
        refresh = APIClient().post("/api/auth/refresh", {"refresh_token": body["refresh_token"]}, format="json")
        assert refresh.status_code == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody-by-this-name"], "no user named 'nobody-by-this-name'"),
        ([], "one of the arguments --user --all is required"),
        (["--user", "x", "--all"], "not allowed with argument"),
    ],
)
def test_revoke_tokens_refuses_bad_arguments_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("revoke_tokens", *args)
