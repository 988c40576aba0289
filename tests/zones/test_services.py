"""The zone sync: the real BigQuery client against FakeBigQuery, validation, failures, invalidation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.selectors import user_context_get
from cachemgmt import cache
from tests.factories import MembershipFactory, ZoneAssignmentFactory, ZoneFactory
from tests.support.bigquery import mappings
from zones import services
from zones.models import Zone, ZoneAssignment, ZoneSyncRun
from zones.selectors import organization_zones_get

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def snapshot() -> set[tuple[str, str, str]]:
    return set(ZoneAssignment.objects.values_list("organization__slug", "zone__code", "zone__name"))


def test_full_sync_from_bigquery_pages_through_every_row(bigquery, organizations):
    organizations(*(f"org-{i}" for i in range(30)))
    bigquery.rows = mappings(30, 7)  # 210 rows: 5 pages of 50

    outcome = services.zone_sync()

    assert outcome.ok, outcome.error
    assert (outcome.source, outcome.rows, outcome.skipped) == ("bigquery", 210, 0)
    assert bigquery.calls_to("jobs.getQueryResults") >= 5
    assert snapshot() == set(bigquery.rows)
    assert Zone.objects.count() == 36
    run = ZoneSyncRun.objects.get()
    assert (run.status, run.source, run.rows, run.skipped, run.error) == ("ok", "bigquery", 210, 0, "")
    assert run.finished_at is not None and run.finished_at >= run.started_at


def test_fixture_source_is_the_default(organizations):
    organizations("acme", "globex", "initech")

    outcome = services.zone_sync()

    assert outcome.ok and outcome.source == "fixture" and outcome.rows > 0
    assert ("acme", "EU-N", "Europe North") in snapshot()


def test_sync_replaces_the_snapshot_with_the_source(bigquery, organizations):
    organizations("a", "b", "c")
    bigquery.rows = [("a", "EU", "Europe"), ("a", "US", "America"), ("b", "US", "America"), ("c", "OLD", "Old")]
    assert services.zone_sync().ok

    bigquery.rows = [("a", "EU", "Europe (renamed)"), ("b", "US", "America"), ("b", "AS", "Asia"), ("c", "AS", "Asia")]
    outcome = services.zone_sync()

    assert outcome.ok
    assert snapshot() == {
        ("a", "EU", "Europe (renamed)"),
        ("b", "US", "America"),
        ("b", "AS", "Asia"),
        ("c", "AS", "Asia"),
    }
    assert not Zone.objects.filter(code="OLD").exists()
    assert (outcome.zones_created, outcome.zones_renamed, outcome.zones_deleted) == (1, 1, 1)
    assert (outcome.assignments_added, outcome.assignments_removed, outcome.organizations_changed) == (2, 2, 3)


def test_invalid_rows_are_counted_and_skipped(bigquery, organizations):
    organizations("a", "b")
    good = [("a", f"Z{i}", f"Zone {i}") for i in range(60)]
    bad = [
        ("nobody", "Z1", "Zone 1"),  # unknown organization
        ("a", "", "Empty code"),
        ("a", "C" * 33, "Code too long"),
        ("b", "Z1", ""),  # empty name
        ("b", "Z2", "N" * 201),
        ("a", "Z3", "Zone 3"),  # duplicate of a good row
    ]
    bigquery.rows = good + bad

    outcome = services.zone_sync()

    assert outcome.ok, outcome.error
    assert (outcome.rows, outcome.skipped) == (60, 6)
    assert outcome.skipped_by_reason == {
        "unknown_organization": 1,
        "invalid_code": 2,
        "invalid_name": 2,
        "duplicate": 1,
    }
    assert ZoneSyncRun.objects.get().skipped == 6
    assert snapshot() == set(good)


def test_longest_valid_code_and_name_are_accepted(bigquery, organizations):
    organizations("a")
    bigquery.rows = [("a", "C" * 32, "N" * 200)]
    assert services.zone_sync().ok
    assert snapshot() == {("a", "C" * 32, "N" * 200)}


def test_rows_disagreeing_on_a_zone_name_resolve_the_same_way_in_any_order(bigquery, organizations):
    organizations("a", "b")
    bigquery.rows = [("a", "EU", "Europe B"), ("b", "EU", "Europe A")]
    assert services.zone_sync().ok
    assert Zone.objects.get(code="EU").name == "Europe A"
    bigquery.rows.reverse()
    outcome = services.zone_sync()
    assert outcome.ok and not outcome.changed


@pytest.mark.parametrize(("bad_rows", "passes"), [(10, True), (11, False)])
def test_bad_row_share_above_the_threshold_fails_and_keeps_the_snapshot(bigquery, organizations, bad_rows, passes):
    organizations("a")
    ZoneAssignmentFactory(organization__slug="a", zone=ZoneFactory(code="KEEP", name="Kept"))
    before = snapshot()
    bigquery.rows = [("a", f"Z{i}", "Zone") for i in range(100 - bad_rows)] + [("x", "Z", "Z")] * bad_rows

    outcome = services.zone_sync()  # MAX_BAD_ROW_SHARE is 0.1: 10 in 100 pass, 11 do not

    run = ZoneSyncRun.objects.get()
    if passes:
        assert outcome.ok and run.status == "ok" and snapshot() != before
    else:
        assert not outcome.ok and outcome.failure == "data"
        assert (run.status, run.rows, run.skipped) == ("failed", 89, 11)
        assert "11 of 100 rows are bad" in run.error and "unknown_organization 11" in run.error
        assert snapshot() == before


def test_threshold_is_a_setting(bigquery, organizations, settings):
    organizations("a")
    settings.ZONES = {**settings.ZONES, "MAX_BAD_ROW_SHARE": 0.5}
    bigquery.rows = [("a", "Z1", "Zone 1"), ("nobody", "Z2", "Zone 2")]
    assert services.zone_sync().ok


def test_empty_result_fails_and_keeps_the_snapshot(bigquery, organizations):
    organizations("a")
    ZoneAssignmentFactory(organization__slug="a", zone=ZoneFactory(code="KEEP", name="Kept"))
    bigquery.rows = []

    outcome = services.zone_sync()

    assert not outcome.ok and "no rows" in outcome.error
    assert snapshot() == {("a", "KEEP", "Kept")}
    assert ZoneSyncRun.objects.get().status == "failed"


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("error500", "HTTP 500"),
        ("error404_table", "not found (404)"),
        pytest.param("slow", "timed out", marks=pytest.mark.slow),  # waits for the 0.5 s timeout
        ("garbage", "malformed response"),
        ("malformed", "malformed response"),
        ("job_error", "Syntax error"),
    ],
)
def test_source_failure_records_the_error_and_keeps_the_previous_snapshot(bigquery, organizations, mode, needle):
    organizations("a", "b")
    bigquery.rows = [("a", "EU", "Europe"), ("b", "US", "America")]
    assert services.zone_sync().ok
    before = snapshot()
    bigquery.mode = mode

    outcome = services.zone_sync()

    assert (outcome.status, outcome.failure) == ("failed", "source")
    run = ZoneSyncRun.objects.order_by("-started_at", "-id").first()
    assert run is not None and run.pk == outcome.run_id
    assert run.status == "failed" and run.finished_at is not None
    assert needle in run.error, run.error
    assert "\n" not in run.error
    assert snapshot() == before


def test_source_failure_after_some_pages_keeps_the_previous_snapshot(bigquery, organizations):
    organizations(*(f"org-{i}" for i in range(10)))
    bigquery.rows = mappings(10, 3)
    assert services.zone_sync().ok
    before = snapshot()
    bigquery.rows = mappings(10, 20)  # 200 rows: 4 pages
    real_handle, pages = bigquery.handle, []

    def fail_from_the_third_page(method, raw_path, body):
        if method == "GET" and "/queries/" in raw_path:
            pages.append(raw_path)
            if len(pages) > 2:
                bigquery.mode = "error500"
        return real_handle(method, raw_path, body)

    bigquery.handle = fail_from_the_third_page

    outcome = services.zone_sync()

    assert not outcome.ok and "HTTP 500" in outcome.error
    assert snapshot() == before


def test_unknown_source_name_is_refused():
    with pytest.raises(ValueError, match="unknown zone source"):
        services.zone_sync(source="postgres")


def test_missing_bigquery_configuration_fails_the_run(settings):
    settings.ZONES = {**settings.ZONES, "BIGQUERY_ZONE_TABLE": None}
    outcome = services.zone_sync(source="bigquery")
    assert outcome.failure == "config" and "table" in outcome.error
    assert ZoneSyncRun.objects.get().status == "failed"


# -- invalidation ---------------------------------------------------------------------


def test_a_sync_reaches_the_cached_contexts_of_changed_organizations(bigquery, organizations):
    a, b = organizations("a", "b")
    alice, bob = MembershipFactory(organization=a).user_id, MembershipFactory(organization=b).user_id
    bigquery.rows = [("a", "EU", "Europe"), ("b", "US", "America")]
    assert services.zone_sync().ok
    assert user_context_get(user_id=alice).public["zones"] == [{"code": "EU", "name": "Europe"}]  # type: ignore[union-attr]
    assert user_context_get(user_id=bob).public["zones_status"] == "ready"  # type: ignore[union-attr]

    bigquery.rows = [("a", "AS", "Asia"), ("b", "US", "America")]
    assert services.zone_sync().ok

    assert user_context_get(user_id=alice).public["zones"] == [{"code": "AS", "name": "Asia"}]  # type: ignore[union-attr]
    assert user_context_get(user_id=bob).public["zones"] == [{"code": "US", "name": "America"}]  # type: ignore[union-attr]


def test_a_sync_invalidates_with_one_cache_round_trip(bigquery, organizations, bumps):
    orgs = organizations(*(f"org-{i}" for i in range(20)))
    bigquery.rows = mappings(20, 3)
    assert services.zone_sync().ok
    bumps.clear()
    bigquery.rows = mappings(20, 4)  # every organization gains a zone

    assert services.zone_sync().ok

    assert len(bumps) == 1
    assert set(bumps[0]) == {cache.dep_organization_key(org.pk) for org in orgs}


def test_a_rename_bumps_the_global_zones_key_in_the_same_round_trip(bigquery, organizations, bumps):
    organizations("a", "b")
    bigquery.rows = [("a", "EU", "Europe"), ("b", "EU", "Europe")]
    assert services.zone_sync().ok
    bumps.clear()
    bigquery.rows = [("a", "EU", "Europa"), ("b", "EU", "Europa")]

    assert services.zone_sync().ok

    assert bumps == [[cache.dep_zones_key()]]


def test_same_data_twice_changes_nothing_and_invalidates_nothing(bigquery, organizations, bumps):
    a, _ = organizations("a", "b")
    user_id = MembershipFactory(organization=a).user_id
    bigquery.rows = [("a", f"Z{i}", f"Zone {i}") for i in range(5)] + [("b", "US", "America")]
    first = services.zone_sync()
    assert first.ok and first.changed
    assert bumps  # the first sync turns pending into ready and fills the zones
    warm = user_context_get(user_id=user_id)
    ids = dict(ZoneAssignment.objects.values_list("pk", "zone_id"))
    bumps.clear()

    second = services.zone_sync()

    assert second.ok and not second.changed and second.organizations_changed == 0
    assert bumps == []
    assert dict(ZoneAssignment.objects.values_list("pk", "zone_id")) == ids
    assert user_context_get(user_id=user_id) == warm


def test_a_failed_run_turns_cached_contexts_stale_but_keeps_their_zones(bigquery, organizations, bumps):
    (a,) = organizations("a")
    user_id = MembershipFactory(organization=a).user_id
    bigquery.rows = [("a", "EU", "Europe")]
    assert services.zone_sync().ok
    assert user_context_get(user_id=user_id).public["zones_status"] == "ready"  # type: ignore[union-attr]
    bumps.clear()
    bigquery.mode = "error500"

    assert not services.zone_sync().ok

    assert bumps == [[cache.dep_zones_key()]]
    public = user_context_get(user_id=user_id).public  # type: ignore[union-attr]
    assert public["zones_status"] == "stale"
    assert public["zones"] == [{"code": "EU", "name": "Europe"}]
    # A second failure changes nothing a context shows: no invalidation.
    bumps.clear()
    assert not services.zone_sync().ok
    assert bumps == []
    # Recovery: ready again.
    bigquery.mode = "ok"
    assert services.zone_sync().ok
    assert user_context_get(user_id=user_id).public["zones_status"] == "ready"  # type: ignore[union-attr]


def test_a_sync_refreshes_the_zone_cache_of_changed_organizations(bigquery, organizations, django_assert_num_queries):
    a, b = organizations("a", "b")
    bigquery.rows = [("a", "EU", "Europe"), ("b", "US", "America")]
    assert services.zone_sync().ok

    with django_assert_num_queries(0):
        assert organization_zones_get(organization_id=a.pk) == [{"code": "EU", "name": "Europe"}]
        assert organization_zones_get(organization_id=b.pk) == [{"code": "US", "name": "America"}]

    bigquery.rows = [("a", "EU", "Europe"), ("a", "AS", "Asia"), ("b", "US", "America")]
    assert services.zone_sync().ok
    with django_assert_num_queries(0):
        assert organization_zones_get(organization_id=a.pk) == [
            {"code": "AS", "name": "Asia"},
            {"code": "EU", "name": "Europe"},
        ]


def test_bulk_sync_sends_no_per_row_signals_and_few_statements(bigquery, organizations, bumps, settings):
    bigquery.page_size = 1000
    settings.ZONES = {**settings.ZONES, "BIGQUERY_PAGE_SIZE": 1000}
    organizations(*(f"org-{i}" for i in range(50)))
    bigquery.rows = mappings(50, 40)  # 2,000 mappings
    assert services.zone_sync().ok
    bigquery.rows = mappings(50, 40)[::2] + [(f"org-{i}", f"N{i}", "New") for i in range(50)]  # half removed
    bumps.clear()

    with CaptureQueriesContext(connection) as queries:
        outcome = services.zone_sync()

    assert outcome.ok and outcome.assignments_removed == 1000 and outcome.assignments_added == 50
    assert len(bumps) == 1  # no per-row post_delete receivers: one round trip
    assert len(queries) < 40, [q["sql"][:80] for q in queries.captured_queries]


@pytest.mark.slow
@pytest.mark.services
def test_scale_script_runs_a_small_sync_end_to_end(postgres):
    import subprocess
    import sys

    from tests.support.processes import process_env
    from tests.support.services import ROOT

    result = subprocess.run(
        [sys.executable, "scripts/zone_sync_scale.py", "--rows", "5000", "--organizations", "50", "--zones", "500",
         "--page-size", "1000", "--no-tracemalloc"],
        cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[2].startswith("initial (empty snapshot): 5,000 rows served, 5,000 synced, 0 skipped")
    assert "+0/-0 assignments" in lines[3]
    assert "+500/-500 assignments" in lines[4]
    assert lines[5] == "final: 5,000 assignments, 500 zones"
