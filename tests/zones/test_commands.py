"""sync_zones and the demo's inline sync: output and exit codes."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from tests.support.bigquery import TABLE
from tests.support.processes import process_env
from tests.support.services import ROOT
from zones.models import ZoneAssignment, ZoneSyncRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def test_sync_zones_prints_rows_skipped_and_duration(organizations):
    organizations("acme", "globex", "initech")
    out = io.StringIO()
    call_command("sync_zones", stdout=out)
    line = out.getvalue().splitlines()[0]
    assert line.startswith("zone sync ok: source=fixture rows=")
    assert "skipped=0" in line and "duration=" in line
    assert ZoneSyncRun.objects.get().status == "ok"


def test_a_sync_skipped_because_another_runs_says_so_and_succeeds(organizations):
    from cachemgmt import cache
    from zones.services import SYNC_LOCK

    organizations("acme")
    token = cache.lock_acquire(SYNC_LOCK, ttl=60)  # another sync is running
    assert token is not None
    try:
        out = io.StringIO()
        call_command("sync_zones", stdout=out)  # no CommandError: exit status 0
    finally:
        cache.lock_release(SYNC_LOCK, token)
    assert out.getvalue().startswith("zone sync skipped: another zone sync is running")
    assert not ZoneSyncRun.objects.exists()


def test_sync_zones_lists_skipped_rows_by_reason(bigquery, organizations):
    organizations("a")
    bigquery.rows = [("a", f"Z{i}", "Zone") for i in range(20)] + [("nobody", "Z1", "Zone")]
    out = io.StringIO()
    call_command("sync_zones", "--source", "bigquery", stdout=out)
    assert "rows=20 skipped=1" in out.getvalue()
    assert "skipped unknown_organization: 1" in out.getvalue()


def test_sync_zones_failure_is_one_clear_command_error(bigquery, organizations):
    organizations("a")
    bigquery.mode = "error404_table"
    with pytest.raises(CommandError) as info:
        call_command("sync_zones", "--source", "bigquery")
    message = str(info.value)
    assert message.startswith("zone sync failed (run ") and "not found (404)" in message
    assert "\n" not in message


def test_sync_zones_refuses_an_unknown_source():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("sync_zones", "--source", "postgres")


def test_seed_demo_syncs_the_bundled_zones_inline_once(settings):
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed_demo", "--users", "1", stdout=out)
    assert "zones: ok (source fixture" in out.getvalue()
    assert ZoneAssignment.objects.filter(organization__slug="acme").exists()
    call_command("seed_demo", "--users", "1", stdout=io.StringIO())  # idempotent: the snapshot stays
    assert ZoneSyncRun.objects.filter(status="ok").count() == 1


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=process_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.services
def test_sync_zones_exit_codes(postgres, bigquery, organizations):
    organizations("a")
    bigquery.rows = [("a", "EU", "Europe")]
    env = {
        "BIGQUERY_PROJECT": "fake-project",
        "BIGQUERY_ZONE_TABLE": TABLE,
        "BIGQUERY_API_ENDPOINT": bigquery.url,
        "LOG_LEVEL": "CRITICAL",
    }

    ok = manage("sync_zones", "--source", "bigquery", **env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("zone sync ok: source=bigquery rows=1 skipped=0 duration=")

    bigquery.mode = "job_error"
    failed = manage("sync_zones", "--source", "bigquery", **env)
    assert failed.returncode == 1
    assert failed.stdout == ""
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: zone sync failed (run "), failed.stderr
    assert "Syntax error" in lines[0]
    assert list(ZoneAssignment.objects.values_list("zone__code", flat=True)) == ["EU"]
