"""What change capture costs a writer: memberships changed per second with and without the triggers.

``python -m bench.writes [--writes 2000] [--users 200]`` recreates the ``authctx_bench_writes``
database on 127.0.0.1:5432, migrates it, and changes memberships' roles through the project's
own service (one transaction each, as an admin edit would) twice, interleaved in rounds: with
the capture triggers, and with them off for the writing session (``session_replication_role =
replica``, which also skips foreign-key triggers: the "without" figure is, if anything,
flattered). It also reports the change rows recorded per write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "authctx_bench_writes"


def _recreate_database() -> str:
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    return f"postgres://postgres@127.0.0.1:5432/{DB}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=2000, help="membership changes per mode (default 2000)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    url = _recreate_database()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="project.settings",
        SECRET_KEY="bench-writes-secret-key-not-for-production-0123456789",
        SECURE_COOKIES="0",
        LOG_LEVEL="WARNING",
    )
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update({k: v for k, v in env.items() if k != "REDIS_URL"})
    os.environ.pop("REDIS_URL", None)

    import django

    django.setup()
    from django.db import connection

    from accounts.models import Membership, Organization, Role
    from accounts.services import membership_set, user_create
    from cachemgmt.models import DependencyChange

    org = Organization.objects.create(name="Bench", slug="bench")
    roles = [Role.objects.create(name=f"bench-role-{i}") for i in range(2)]
    users = [user_create(username=f"writer{i}", password=None) for i in range(args.users)]
    for user in users:
        Membership.objects.create(user=user, organization=org, role=roles[0])

    def run(writes: int, capture: bool) -> tuple[float, float]:
        with connection.cursor() as cursor:
            cursor.execute(f"SET session_replication_role = {'origin' if capture else 'replica'}")
        before = DependencyChange.objects.count()
        started = time.perf_counter()
        for i in range(writes):
            user = users[i % len(users)]
            membership_set(user_id=user.pk, organization_id=org.pk, role_id=roles[(i // len(users) + 1) % 2].pk)
        seconds = time.perf_counter() - started
        rows = DependencyChange.objects.count() - before
        return writes / seconds, rows / writes

    per_round = max(1, args.writes // args.rounds)
    run(min(200, per_round), True)  # warm-up
    results: dict[str, list[float]] = {"with capture": [], "without capture": []}
    rows_per_write: list[float] = []
    for _ in range(args.rounds):
        rate, rows = run(per_round, True)
        results["with capture"].append(rate)
        rows_per_write.append(rows)
        rate, _ = run(per_round, False)
        results["without capture"].append(rate)
    report = {
        "writes_per_mode": per_round * args.rounds,
        "memberships_per_second": {mode: round(statistics.median(rates), 1) for mode, rates in results.items()},
        "spread": {mode: [round(r, 1) for r in rates] for mode, rates in results.items()},
        "change_rows_per_write": round(statistics.median(rows_per_write), 2),
    }
    with_rate = report["memberships_per_second"]["with capture"]  # type: ignore[index]
    without_rate = report["memberships_per_second"]["without capture"]  # type: ignore[index]
    report["capture_cost"] = f"{(1 - with_rate / without_rate) * 100:.1f}% fewer writes per second"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
