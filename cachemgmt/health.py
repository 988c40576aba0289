"""Readiness checks (database, migrations, cache, broker, carrier, zones), run concurrently under one deadline.

Each check runs in its own daemon thread; whatever has not answered by the deadline is
reported as ``timeout`` and left to finish (or fail) on its own, so a hanging dependency
costs the caller the deadline, never the dependency's own timeout.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from cachemgmt import cache, hooks
from cachemgmt.selectors import carrier_report

DEADLINE_SECONDS = 0.8
BROKER_TIMEOUT_SECONDS = 0.5

OK, DEGRADED, DOWN, TIMEOUT, SKIPPED = "ok", "degraded", "down", "timeout", "skipped"


@dataclass
class CheckResult:
    status: str
    latency_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "latency_ms": self.latency_ms, **self.details}


class _Skipped(Exception):
    pass


def _database() -> dict[str, Any]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def _cache() -> dict[str, Any]:
    # One small read through the same breaker requests use: an open circuit reports as down.
    cache.get_store().stats_since()
    return {"backend": cache.backend_name()}


def _broker() -> dict[str, Any]:
    url = getattr(settings, "CELERY_BROKER_URL", None)
    if not url:
        raise _Skipped("not configured")
    from kombu import Connection

    timeout = BROKER_TIMEOUT_SECONDS
    # The broker's own transport options first (the Sentinel transport's master_name).
    options = {
        **getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_retries": 0,
    }
    with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, interval_max=0, timeout=1)
        conn.default_channel  # noqa: B018 - opening a channel proves the broker answers
    return {}


# Once every migration is applied it stays so for the life of the process (a deploy that adds
# migrations starts new processes): the migration graph is loaded until then, not after.
_migrations_applied = False


def _migrations() -> dict[str, Any]:
    global _migrations_applied
    if _migrations_applied:
        return {"unapplied": 0}
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections["default"])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = [f"{migration.app_label}.{migration.name}" for migration, _ in plan[:5]]
        raise Degraded({"unapplied": len(plan), "detail": "unapplied migrations: " + ", ".join(names)})
    _migrations_applied = True
    return {"unapplied": 0}


def _carrier() -> dict[str, Any]:
    report = carrier_report()
    if report["role"] == "off":
        raise _Skipped("no carrier runs in this process")
    details = {k: report[k] for k in ("role", "lag_seconds", "pending")}
    if not report["trusted"]:
        raise Degraded({**details, "detail": f"carrier down or behind by more than {report['bound_seconds']}s"})
    return details


class Degraded(Exception):
    """Raised by a check whose dependency answers but is not as it should be (``details`` say how)."""

    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__(details.get("detail", "degraded"))
        self.details = details


def _run(check: Callable[[], dict[str, Any]], uses_database: bool) -> CheckResult:
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 2)

    try:
        details = check()
    except _Skipped as exc:
        return CheckResult(SKIPPED, None, {"detail": str(exc)})
    except Degraded as exc:
        return CheckResult(DEGRADED, elapsed(), exc.details)
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is its check's outcome
        return CheckResult(DOWN, elapsed(), {"error": type(exc).__name__})
    finally:
        if uses_database:
            # This thread's connection goes back to the pool (or is closed) right away.
            connections.close_all()
    return CheckResult(OK, elapsed(), details)


def health_check(*, deadline: float = DEADLINE_SECONDS, now: Callable[[], Any] = timezone.now) -> dict[str, Any]:
    """``{"status": ok|degraded|down, "checks": {...}}``, answered within ``deadline`` seconds.

    ``down`` only when the database is unreachable; any other failing check degrades.
    """
    checks: dict[str, tuple[Callable[[], dict[str, Any]], bool]] = {
        "database": (_database, True),
        "cache": (_cache, False),
        "broker": (_broker, False),
        "carrier": (_carrier, True),
        "migrations": (_migrations, True),
    }
    for name, (registered, uses_database) in hooks.health_checks().items():
        checks[name] = (functools.partial(registered, now), uses_database)
    results: dict[str, CheckResult] = {}
    threads: dict[str, threading.Thread] = {}
    started = time.perf_counter()
    for name, (check, uses_db) in checks.items():

        def target(name: str = name, check: Callable[[], dict[str, Any]] = check, uses_db: bool = uses_db) -> None:
            results[name] = _run(check, uses_db)

        thread = threading.Thread(target=target, name=f"health-{name}", daemon=True)
        threads[name] = thread
        thread.start()
    end = started + deadline
    for thread in threads.values():
        thread.join(max(0.0, end - time.perf_counter()))
    waited = round((time.perf_counter() - started) * 1000, 2)
    done = dict(results)  # a late thread may still write to ``results``
    report = {name: (done[name] if name in done else CheckResult(TIMEOUT, waited)).as_dict() for name in checks}
    if report["database"]["status"] != OK:
        status = DOWN
    elif any(check["status"] not in {OK, SKIPPED} for check in report.values()):
        status = DEGRADED
    else:
        status = OK
    return {"status": status, "checks": report}
