"""Health probes: readiness of each dependency under one short deadline; liveness touching nothing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from cachemgmt import cache, health
from zones.models import ZoneSyncRun

CHECKS = {"database", "migrations", "cache", "broker", "carrier", "zones"}


def sync_run(age: timedelta, status: str = "ok") -> ZoneSyncRun:
    finished = timezone.now() - age
    return ZoneSyncRun.objects.create(
        started_at=finished - timedelta(seconds=5), finished_at=finished, source="fixture", status=status, rows=3
    )


def test_live_touches_no_dependency(client, monkeypatch):
    # No django_db mark: any database access would raise.
    def unreachable(*args, **kwargs):
        raise AssertionError("liveness must not touch the cache")

    monkeypatch.setattr(cache, "get_store", unreachable)
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_health_is_ok_with_a_recent_zone_sync(client, settings):
    settings.CELERY_BROKER_URL = None
    sync_run(timedelta(minutes=5))

    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    for name in ("database", "cache", "zones"):
        assert body["checks"][name]["status"] == "ok"
        assert body["checks"][name]["latency_ms"] >= 0
    assert body["checks"]["broker"]["status"] == "skipped"
    assert body["checks"]["zones"]["age_seconds"] == pytest.approx(300, abs=30)
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db(transaction=True)
def test_health_is_degraded_before_the_first_zone_sync(client, settings):
    settings.CELERY_BROKER_URL = None
    ZoneSyncRun.objects.create(started_at=timezone.now(), source="fixture", status="failed")

    body = client.get("/health").json()

    assert body["status"] == "degraded"
    assert body["checks"]["zones"]["status"] == "degraded"
    assert body["checks"]["zones"]["age_seconds"] is None


@pytest.mark.django_db(transaction=True)
def test_health_is_degraded_when_the_snapshot_is_older_than_one_and_a_half_intervals(client, settings):
    settings.CELERY_BROKER_URL = None
    settings.ZONES = {**settings.ZONES, "SYNC_INTERVAL": 3600}
    sync_run(timedelta(seconds=5500))  # 1.5 x 3600 = 5400

    response = client.get("/health")

    assert response.status_code == 200
    zones = response.json()["checks"]["zones"]
    assert response.json()["status"] == "degraded"
    assert zones["status"] == "degraded"
    assert zones["age_seconds"] == pytest.approx(5500, abs=30)


@pytest.mark.django_db(transaction=True)
def test_health_is_down_with_503_when_the_database_is_unreachable(client, monkeypatch):
    def refused():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_database", refused)

    response = client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["database"] == {
        "status": "down",
        "latency_ms": body["checks"]["database"]["latency_ms"],
        "error": "OperationalError",
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_health_reports_a_hanging_check_as_timeout_and_still_answers(client, monkeypatch, settings):
    release = threading.Event()

    def hangs():
        release.wait(30)
        return {}

    monkeypatch.setattr(health, "_broker", hangs)
    sync_run(timedelta(minutes=1))
    try:
        response = client.get("/health")
    finally:
        release.set()

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["broker"]["status"] == "timeout"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_health_answers_promptly_while_redis_is_paused(client, redis_server):
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": "authctx-health",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25},
        }
    }
    sync_run(timedelta(minutes=1))
    with override_settings(REDIS_URL=redis_server.url, CACHES=caches, CELERY_BROKER_URL=redis_server.url):
        cache.reset_store()
        assert client.get("/health").json()["checks"]["cache"]["status"] == "ok"
        redis_server.pause()
        try:
            started = time.monotonic()
            response = client.get("/health")
            elapsed = time.monotonic() - started
        finally:
            redis_server.resume()
        cache.reset_store()

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["cache"]["status"] in {"down", "timeout"}
    assert body["checks"]["broker"]["status"] in {"down", "timeout"}
    # A bound on a hang, not a speed measurement: the dependency's own timeouts are longer.
    assert elapsed < 2.5


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_health_checks_the_configured_broker(client, settings, redis_cache):
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    sync_run(timedelta(minutes=1))

    body = client.get("/health").json()

    assert body["checks"]["broker"]["status"] == "ok"
    assert body["status"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_unapplied_migrations_degrade_readiness(client, monkeypatch):
    from django.core.management import call_command

    monkeypatch.setattr(health, "_migrations_applied", False)
    call_command("migrate", "cachemgmt", "0001", verbosity=0)  # the newest cachemgmt migration undone
    try:
        body = client.get("/health").json()
        assert body["status"] == "degraded"
        migrations = body["checks"]["migrations"]
        assert migrations["status"] == "degraded" and migrations["unapplied"] >= 1
        assert "cachemgmt.0002" in migrations["detail"]
    finally:
        call_command("migrate", verbosity=0)
    body = client.get("/health").json()
    assert body["checks"]["migrations"] == {"status": "ok", "latency_ms": body["checks"]["migrations"]["latency_ms"],
                                            "unapplied": 0}  # fmt: skip
