#!/usr/bin/env python
"""Zone sync at scale: 100,000 mappings from FakeBigQuery into PostgreSQL, measured.

    SECRET_KEY=x .venv/bin/python scripts/zone_sync_scale.py [--rows 100000] [--organizations 1000]

Runs against a scratch database (``<name>_zone_scale``, created and dropped here) on the
server of ``DATABASE_URL`` (default: the local PostgreSQL). FakeBigQuery runs in a child
process so the figures are the sync's alone. Three syncs are measured: the first into an
empty snapshot, the same data again (nothing changes), and one where 10% of the mappings
moved. For each: wall time, peak Python allocations (tracemalloc, which also slows the run;
``--no-tracemalloc`` for clean timings), the process's peak RSS, and the SQL statements issued.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLE = "fake-project.zones_scale.zone_mappings"


def build_rows(organizations: int, rows: int, zones: int, moved_share: float) -> list[tuple[str, str, str]]:
    """``rows`` mappings spread evenly over ``organizations``; ``moved_share`` of them point elsewhere."""
    per_org = rows // organizations
    out = []
    for i in range(organizations):
        for j in range(per_org):
            shift = 1 if (i * per_org + j) % 100 < moved_share * 100 else 0
            code = f"Z{(i * 37 + j + shift * per_org) % zones:05d}"
            out.append((f"scale-{i:05d}", code, f"Zone {code}"))
    return out


def serve(conn: Connection, page_size: int) -> None:
    """Child process: a FakeBigQuery whose rows the parent sets by message."""
    sys.path.insert(0, str(ROOT))
    from tests.support.bigquery import FakeBigQuery

    with FakeBigQuery(page_size=page_size) as fake:
        conn.send(fake.url)
        while True:
            message = conn.recv()
            if message is None:
                return
            fake.rows = build_rows(*message)
            conn.send(len(fake.rows))


@contextmanager
def statement_counter() -> Iterator[list[int]]:
    from django.db import connection

    counted = [0]

    def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        counted[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        yield counted


def max_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--organizations", type=int, default=1_000)
    parser.add_argument("--zones", type=int, default=5_000, help="distinct zone codes")
    parser.add_argument("--page-size", type=int, default=10_000, help="rows per BigQuery page")
    parser.add_argument("--no-tracemalloc", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/authctx")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    sys.path.insert(0, str(ROOT))

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(child, args.page_size), daemon=True)
    server.start()
    url = parent.recv()

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        print("DATABASE_URL must point at PostgreSQL", file=sys.stderr)
        return 2
    db = settings.DATABASES["default"]
    db["TEST"]["NAME"] = f"{db['NAME']}_zone_scale"
    settings.ZONES = {
        **settings.ZONES,
        "SOURCE": "bigquery",
        "BIGQUERY_PROJECT": "fake-project",
        "BIGQUERY_ZONE_TABLE": TABLE,
        "BIGQUERY_API_ENDPOINT": url,
        "BIGQUERY_PAGE_SIZE": args.page_size,
        "BIGQUERY_TIMEOUT": 60.0,
    }
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        from accounts.models import Organization
        from zones.models import Zone, ZoneAssignment
        from zones.services import zone_sync

        Organization.objects.bulk_create(
            [Organization(slug=f"scale-{i:05d}", name=f"Scale {i}") for i in range(args.organizations)],
            batch_size=5000,
        )
        print(
            f"zone sync scale: {args.rows:,} mappings, {args.organizations:,} organizations, "
            f"{args.zones:,} zone codes, BigQuery pages of {args.page_size:,}, database {db['TEST']['NAME']}"
        )
        print(f"baseline: max RSS {max_rss_mb():.0f} MiB")
        phases = [("initial (empty snapshot)", 0.0), ("same data again", 0.0), ("10% of mappings moved", 0.1)]
        for label, moved in phases:
            parent.send((args.organizations, args.rows, args.zones, moved))
            served = parent.recv()
            if not args.no_tracemalloc:
                tracemalloc.start()
            with statement_counter() as statements:
                started = time.perf_counter()
                outcome = zone_sync()
                elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] / 2**20 if tracemalloc.is_tracing() else float("nan")
            tracemalloc.stop()
            if not outcome.ok:
                print(f"{label}: FAILED: {outcome.error}", file=sys.stderr)
                return 1
            print(
                f"{label}: {served:,} rows served, {outcome.rows:,} synced, {outcome.skipped} skipped | "
                f"{elapsed:.2f}s (read {outcome.read_seconds:.2f}s, write {outcome.write_seconds:.2f}s) | "
                f"peak traced {peak:.1f} MiB, max RSS {max_rss_mb():.0f} MiB | {statements[0]} SQL statements | "
                f"+{outcome.assignments_added:,}/-{outcome.assignments_removed:,} assignments, "
                f"+{outcome.zones_created:,} zones, {outcome.organizations_changed:,} organizations changed"
            )
        print(f"final: {ZoneAssignment.objects.count():,} assignments, {Zone.objects.count():,} zones")
    finally:
        connection.close()
        teardown_databases(old_config, verbosity=0)
        parent.send(None)
        server.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
