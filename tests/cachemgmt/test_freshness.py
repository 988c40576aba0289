"""A write from outside the servers (raw SQL on a connection of its own as another service would,
``update()``, ``bulk_update()``, ``psql``) is served by every server process within the bound,
in every topology.

``FRESHNESS_WRITES=500`` makes each run measure 500 writes (default 40); the figures (p50,
p99 and max of commit -> first fresh answer on every server) print as hardening lines.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from accounts.models import Profile
from tests.factories import PASSWORD, MembershipFactory
from tests.support.freshness import Reader, login, measure, summary
from tests.support.processes import process_env
from tests.support.services import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WRITES = int(os.environ.get("FRESHNESS_WRITES", "40"))
BOUND_MS = 1000  # past this, a server must not answer from its cache (the carrier's trust bound)


def postgres_writers(user_id: int):
    """Writers that bypass the project's signals, taken in turn: raw SQL on a driver connection
    of its own (another service), ``QuerySet.update()``, ``bulk_update()`` and ``psql``."""
    params = connection.get_connection_params()
    conninfo = {k: params[k] for k in ("host", "port", "user", "dbname") if params.get(k)}
    raw = psycopg.connect(**conninfo, password=params.get("password"), autocommit=True)
    calls = itertools.count()

    def write(value: str) -> None:
        kind = next(calls) % 4
        if kind == 0:
            raw.execute("UPDATE accounts_profile SET display_name = %s WHERE user_id = %s", [value, user_id])
        elif kind == 1:
            Profile.objects.filter(user_id=user_id).update(display_name=value)
        elif kind == 2:
            profile = Profile.objects.get(user_id=user_id)
            profile.display_name = value
            Profile.objects.bulk_update([profile], ["display_name"])
        else:
            sql = "UPDATE accounts_profile SET display_name = :'v' WHERE user_id = :'u'"
            subprocess.run(
                ["psql", "-h", conninfo.get("host", "127.0.0.1"), "-p", str(conninfo.get("port", 5432)),
                 "-U", conninfo["user"], "-d", conninfo["dbname"], "-v", "ON_ERROR_STOP=1",
                 "-v", f"v={value}", "-v", f"u={user_id}"],
                input=sql, text=True, check=True, capture_output=True, timeout=30,
            )  # fmt: skip

    return write


def run_topology(web_process, hardening_report, *, topology: str, **env: str) -> None:
    member = MembershipFactory()
    webs = [web_process(workers=1, **env) for _ in range(2)]  # two gunicorn masters
    readers = [Reader(web.url, login(web, member.user.username, PASSWORD)) for web in webs]
    for reader in readers:
        reader.display_name()  # warm: the context is cached in every server
    latencies = measure(readers, postgres_writers(member.user_id), writes=WRITES)
    figures = summary(latencies)
    hardening_report(topology=topology, **figures)
    assert figures["max_ms"] < BOUND_MS, figures


@pytest.mark.services
def test_postgres_and_redis(postgres, redis_cache, web_process, hardening_report):
    run_topology(web_process, hardening_report, topology="postgres+redis")


@pytest.mark.services
def test_postgres_without_redis_several_processes(postgres, web_process, hardening_report):
    run_topology(web_process, hardening_report, topology="postgres, in-process caches", REDIS_URL="")


def test_sqlite_demo_with_a_second_process(tmp_path: Path, web_process, hardening_report):
    """The embedded default: a file SQLite database, in-process caches, two server processes and
    a third process writing (as ``manage.py shell`` would)."""
    database = tmp_path / "demo.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{database}", "REDIS_URL": "", "CELERY_BROKER_URL": ""}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=process_env(**env), check=True, timeout=120
    )
    seed = (
        "import django; django.setup(); from accounts.services import user_create; "
        f"print(user_create(username='reader', password={PASSWORD!r}).pk)"
    )
    user_id = int(
        subprocess.run(
            [sys.executable, "-c", seed], cwd=ROOT, env=process_env(**env), check=True, timeout=120,
            capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    webs = [web_process(workers=1, **env) for _ in range(2)]
    readers = [Reader(web.url, login(web, "reader", PASSWORD)) for web in webs]
    for reader in readers:
        reader.display_name()
    raw = sqlite3.connect(database, timeout=10, isolation_level=None)

    def write(value: str) -> None:
        raw.execute("UPDATE accounts_profile SET display_name = ? WHERE user_id = ?", (value, user_id))

    figures = summary(measure(readers, write, writes=WRITES))
    hardening_report(topology="sqlite demo, in-process caches", **figures)
    assert figures["max_ms"] < BOUND_MS, figures
