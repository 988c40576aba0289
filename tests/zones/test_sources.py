"""Zone sources: the bundled fixture and BigQuery (real client against FakeBigQuery).

Plain pytest, no Django needed (runs with ``-p no:django``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from tests.support.bigquery import TABLE, FakeBigQuery
from zones import sources
from zones.sources import (
    BigQuerySource,
    FixtureSource,
    ZoneRow,
    ZoneSource,
    ZoneSourceError,
    bigquery_client,
    get_source,
)

pytestmark = pytest.mark.timeout(120)


def make_rows(n: int) -> list[tuple[str, str, str]]:
    return [(f"org-{i % 97}", f"Z{i:06d}", f"Zone {i}") for i in range(n)]


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    sources._clear_client_cache()
    yield
    sources._clear_client_cache()


@pytest.fixture
def fake() -> Iterator[FakeBigQuery]:
    with FakeBigQuery(make_rows(25)) as server:
        yield server


def source_for(fake: FakeBigQuery, **kwargs: object) -> BigQuerySource:
    options: dict[str, object] = {"timeout": 1.0, "page_size": 1000}
    options.update(kwargs)
    return BigQuerySource(
        project=None,
        table=TABLE,
        api_endpoint=fake.url,
        timeout=float(options["timeout"]),  # type: ignore[arg-type]
        page_size=int(options["page_size"]),  # type: ignore[call-overload]
    )


def assert_fails(source: ZoneSource, *needles: str) -> ZoneSourceError:
    with pytest.raises(ZoneSourceError) as info:
        list(source.fetch())
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return info.value


# -- fixture -------------------------------------------------------------------


def test_fixture_source_yields_bundled_rows() -> None:
    source = FixtureSource()
    rows = list(source.fetch())
    assert source.name == "fixture"
    assert isinstance(source, ZoneSource)
    assert {r.organization_slug for r in rows} == {"acme", "globex", "initech"}
    assert ZoneRow("acme", "EU-N", "Europe North") in rows
    assert ZoneRow("globex", "APAC", "Asia Pacific") in rows
    for slug in ("acme", "globex", "initech"):
        assert 2 <= sum(r.organization_slug == slug for r in rows) <= 5
    assert list(source.fetch()) == rows  # re-readable


def test_fixture_source_errors(tmp_path: Path) -> None:
    assert_fails(FixtureSource(tmp_path / "missing.csv"), "cannot read")
    bad = tmp_path / "bad.csv"
    bad.write_text("slug,code,name\nacme,EU-N,Europe North\n", encoding="utf-8")
    assert_fails(FixtureSource(bad), "header")


def test_zone_row_is_frozen() -> None:
    row = ZoneRow("acme", "EU-N", "Europe North")
    with pytest.raises(AttributeError):
        row.zone_code = "x"  # type: ignore[misc]


# -- factory ---------------------------------------------------------------------


def test_get_source() -> None:
    fixture = get_source("fixture", table=TABLE, project="ignored")
    assert isinstance(fixture, FixtureSource)
    bq = get_source("BigQuery", table=TABLE, api_endpoint="http://127.0.0.1:9", timeout=2)
    assert isinstance(bq, BigQuerySource)
    assert (bq.name, bq.project, bq.timeout, bq.page_size) == (
        "bigquery",
        "fake-project",
        2.0,
        10000,
    )
    with pytest.raises(ValueError, match="unknown zone source"):
        get_source("postgres")
    with pytest.raises(TypeError, match="tabel"):
        get_source("bigquery", tabel=TABLE)
    with pytest.raises(ValueError, match="table"):
        get_source("bigquery")


@pytest.mark.parametrize(
    "table",
    [
        "",
        "dataset.table",
        "fake-project.zones.zone_mappings.extra",
        "fake-project.zones.zone mappings",
        "fake-project.zones.t`; DROP TABLE x; --",
        "fake-project.zo-nes.table",
        "Fake-Project.zones.table",
        "ab.zones.table",
        "fake-project.zones.table\n",
        "fake-project..table",
    ],
)
def test_invalid_table_names_are_rejected(table: str) -> None:
    with pytest.raises(ValueError, match="invalid BigQuery table"):
        BigQuerySource(project="fake-project", table=table)


def test_valid_table_name_and_query() -> None:
    source = BigQuerySource(project="billing-project", table="my-proj-1.Zones_2.zone-map_v2")
    assert source.project == "billing-project"
    assert "FROM `my-proj-1.Zones_2.zone-map_v2`" in source.query
    assert "@min_slug_length" in source.query
    for bad in ({"timeout": 0}, {"page_size": 0}):
        with pytest.raises(ValueError):
            BigQuerySource(project=None, table=TABLE, **bad)  # type: ignore[arg-type]


# -- BigQuery happy path -----------------------------------------------------------


def test_bigquery_reads_all_pages(fake: FakeBigQuery) -> None:
    fake.rows = make_rows(2500)
    rows = list(source_for(fake, page_size=1000).fetch())
    assert len(rows) == 2500
    assert rows[0] == ZoneRow("org-0", "Z000000", "Zone 0")
    assert rows[-1] == ZoneRow(f"org-{2499 % 97}", "Z002499", "Zone 2499")

    assert fake.calls_to("jobs.insert") == 1
    paths = [path for method, path in fake.calls if method == "GET" and "/queries/" in path]
    assert len(paths) == 3
    assert "maxResults=1000" in paths[0] and "pageToken=" not in paths[0]
    assert all("pageToken=" in p and "maxResults=1000" in p for p in paths[1:])
    assert fake.calls[0][1].startswith("/bigquery/v2/projects/fake-project/jobs")


def test_bigquery_server_side_page_cap(fake: FakeBigQuery) -> None:
    fake.page_size = 300  # server returns fewer rows than asked, with a page token
    fake.rows = make_rows(1000)
    assert len(list(source_for(fake, page_size=5000).fetch())) == 1000
    assert sum("pageToken=" in path for _, path in fake.calls) == 3


def test_bigquery_sends_query_parameter(fake: FakeBigQuery) -> None:
    list(source_for(fake).fetch())
    assert fake.last_query is not None
    assert f"FROM `{TABLE}`" in fake.last_query
    assert "@min_slug_length" in fake.last_query
    assert fake.last_parameters == [
        {
            "name": "min_slug_length",
            "parameterType": {"type": "INT64"},
            "parameterValue": {"value": "0"},
        }
    ]


def test_bigquery_none_becomes_empty_string(fake: FakeBigQuery) -> None:
    fake.rows = [("acme", None, "Europe North"), ("acme", "EU-W", None)]  # type: ignore[list-item]
    assert list(source_for(fake).fetch()) == [
        ZoneRow("acme", "", "Europe North"),
        ZoneRow("acme", "EU-W", ""),
    ]


def test_bigquery_empty_table(fake: FakeBigQuery) -> None:
    fake.rows = []
    assert list(source_for(fake).fetch()) == []


def test_bigquery_streams_100k_rows() -> None:
    with FakeBigQuery(make_rows(100_000), page_size=10_000) as server:
        source = source_for(server, page_size=10_000, timeout=30.0)
        count = sum(1 for _ in source.fetch())
    assert count == 100_000


# -- BigQuery failures --------------------------------------------------------------


def test_error500(fake: FakeBigQuery) -> None:
    fake.mode = "error500"
    started = time.monotonic()
    assert_fails(source_for(fake), "500", "internal error")
    assert time.monotonic() - started < 15
    assert fake.calls_to("jobs.insert") >= 1


def test_error404_table(fake: FakeBigQuery) -> None:
    fake.mode = "error404_table"
    assert_fails(source_for(fake), "not found", "fake-project:zones_ds.zone_mappings")
    assert fake.calls_to("jobs.insert") == 1  # not retried


@pytest.mark.slow
@pytest.mark.parametrize("slow_methods", [None, frozenset({"jobs.getQueryResults"})])
def test_slow_server_times_out(fake: FakeBigQuery, slow_methods: frozenset[str] | None) -> None:
    # Only-getQueryResults matters: the client raises that call's HTTP timeout to >= 120 s,
    # so without the source's timeout cap this would succeed after `delay` seconds.
    fake.mode, fake.delay, fake.slow_methods = "slow", 4.0, slow_methods
    assert_fails(source_for(fake, timeout=1.0), "timed out")


def test_garbage_body(fake: FakeBigQuery) -> None:
    fake.mode = "garbage"
    assert_fails(source_for(fake), "malformed response", "not JSON")


def test_malformed_without_schema(fake: FakeBigQuery) -> None:
    fake.mode = "malformed"  # default body: no schema, rows of the wrong shape
    assert_fails(source_for(fake), "malformed response")


def test_malformed_no_result_set(fake: FakeBigQuery) -> None:
    fake.mode = "malformed"
    fake.malformed_body = {
        "kind": "bigquery#getQueryResultsResponse",
        "jobComplete": True,
    }
    assert_fails(source_for(fake), "malformed response", "no result set")


def test_malformed_row_shapes(fake: FakeBigQuery) -> None:
    fake.mode = "malformed"
    fake.malformed_body = {
        "jobComplete": True,
        "totalRows": "2",
        "schema": {"fields": [{"name": c, "type": "STRING"} for c in sources.COLUMNS]},
        "rows": [{"f": [{"v": "acme"}]}, {"nope": 1}],
    }
    assert_fails(source_for(fake), "malformed response")


def test_malformed_wrong_types(fake: FakeBigQuery) -> None:
    fake.mode = "malformed"
    fake.malformed_body = ["not", "an", "object"]
    assert_fails(source_for(fake), "malformed response")


def test_job_error(fake: FakeBigQuery) -> None:
    fake.mode = "job_error"
    assert_fails(source_for(fake), "Syntax error")


def test_unreachable_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = BigQuerySource(project=None, table=TABLE, api_endpoint=f"http://127.0.0.1:{port}", timeout=1.0)
    started = time.monotonic()
    assert_fails(source, "cannot connect", f"127.0.0.1:{port}")
    assert time.monotonic() - started < 15


def test_error_message_has_no_credentials(fake: FakeBigQuery) -> None:
    host = fake.url.removeprefix("http://")
    source = BigQuerySource(
        project=None,
        table=TABLE,
        api_endpoint=f"http://user:s3cr3t@{host}",
        timeout=1.0,
    )
    fake.mode = "error404_table"
    error = assert_fails(source, "not found")
    assert "s3cr3t" not in str(error)


def test_source_recovers_after_failure(fake: FakeBigQuery) -> None:
    source = source_for(fake)
    fake.mode = "error500"
    assert_fails(source)
    fake.mode = "ok"
    assert len(list(source.fetch())) == 25


# -- client cache -----------------------------------------------------------------


def test_client_created_once_per_process(fake: FakeBigQuery, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[tuple[str | None, str | None]] = []
    real_create = sources._create_client

    def counting_create(project: str | None, api_endpoint: str | None) -> bigquery.Client:
        created.append((project, api_endpoint))
        time.sleep(0.05)  # widen the race window
        return real_create(project, api_endpoint)

    monkeypatch.setattr(sources, "_create_client", counting_create)

    results: list[bigquery.Client] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(bigquery_client("fake-project", fake.url))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(c is results[0] for c in results)

    source = source_for(fake)
    list(source.fetch())
    list(source.fetch())
    list(source_for(fake, page_size=7).fetch())
    assert created == [("fake-project", fake.url)]
    assert bigquery_client("fake-project", fake.url) is results[0]


def test_anonymous_client_for_endpoint(fake: FakeBigQuery) -> None:
    client = bigquery_client("fake-project", fake.url)
    assert client.project == "fake-project"
    assert isinstance(client._credentials, AnonymousCredentials)


# -- the fake itself (other REST paths the client may use) -------------------------


def test_fake_supports_jobs_query_and_tabledata_list(fake: FakeBigQuery) -> None:
    fake.rows = make_rows(2100)
    client = bigquery_client("fake-project", fake.url)
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("n", "INT64", 0)])
    job = client.query("SELECT 1 WHERE @n = 0", job_config=config, api_method="QUERY")
    assert len(list(job.result(page_size=1000))) == 2100
    assert fake.calls_to("jobs.query") == 1
    assert job.destination is not None
    listed = client.list_rows(job.destination, page_size=800)
    assert len(list(listed)) == 2100
    assert fake.calls_to("tabledata.list") == 3


def test_fake_rejects_missing_parameter(fake: FakeBigQuery) -> None:
    client = bigquery_client("fake-project", fake.url)
    with pytest.raises(Exception, match="min_len"):
        client.query("SELECT 1 WHERE @min_len >= 0", job_retry=None).result(job_retry=None)
