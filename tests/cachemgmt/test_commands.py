"""clear_cache and cache_stats: the API's behaviour from the command line, audited the same way."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from cachemgmt.models import CacheAuditEntry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_cache_stats_json_is_what_the_api_returns(bearer):
    staff = UserFactory(is_staff=True)
    api = APIClient().get("/api/admin/cache/stats", **bearer(staff)).json()

    printed = json.loads(run("cache_stats", "--json"))

    assert set(printed) == set(api) == {"backend", "since", "namespaces", "server", "carrier"}
    assert printed["backend"] == api["backend"]
    assert set(printed["namespaces"]["zones"]) == set(api["namespaces"]["zones"])


def test_cache_stats_prints_a_table():
    output = run("cache_stats")
    assert "user_context" in output and "zones" in output
    assert "hit_ratio" in output
    assert "last zone sync: never" in output


def test_clear_cache_defaults_to_every_namespace_and_is_audited():
    output = run("clear_cache")

    assert output.strip() == "Cleared: user_context, zones"
    entry = CacheAuditEntry.objects.get()
    assert (entry.source, entry.action, entry.target, entry.actor_id) == ("command", "clear", "all", None)
    assert entry.actor_label.endswith("(manage.py)")


def test_clear_cache_one_user():
    user = UserFactory()
    assert run("clear_cache", "--user", str(user.pk)).strip() == f"Cleared: user_context of user {user.pk}"
    assert CacheAuditEntry.objects.get().target == f"user_context:user={user.pk}"


def test_clear_cache_one_namespace():
    assert run("clear_cache", "--namespace", "zones").strip() == "Cleared: zones"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "987654321"], "No user with id 987654321."),
        (["--user", "-3"], "no user with id -3"),
        (["--namespace", "zones", "--user", "1"], "user_id can only be combined with the user_context namespace."),
    ],
)
def test_clear_cache_refusals_fail_with_one_line_and_record_nothing(args, message):
    with pytest.raises(CommandError) as raised:
        run("clear_cache", *args)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not CacheAuditEntry.objects.exists()


def test_clear_cache_rejects_an_unknown_namespace():
    with pytest.raises(CommandError, match="invalid choice"):
        run("clear_cache", "--namespace", "sessions")
