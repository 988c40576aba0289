"""The sync task: lock, retries, beat schedule, worker preload, and real Celery workers on Redis."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery.beat import Scheduler
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun, worker_ready
from django.db import close_old_connections
from django.utils import timezone

from cachemgmt import cache
from project.celery import app
from tests.support.bigquery import TABLE, mappings
from tests.support.services import service_missing
from zones import services, tasks
from zones.models import ZoneAssignment, ZoneSyncRun
from zones.sources import ZoneSourceError
from zones.tasks import zone_sync_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def runs(status: str | None = None) -> int:
    qs = ZoneSyncRun.objects.all()
    return qs.filter(status=status).count() if status else qs.count()


# -- configuration ---------------------------------------------------------------------


def test_beat_schedules_one_sync_every_interval(settings):
    entry = app.conf.beat_schedule["zones-sync"]
    assert entry["task"] == zone_sync_task.name == "zones.tasks.zone_sync_task"
    assert entry["schedule"] == float(settings.ZONES["SYNC_INTERVAL"])
    assert entry["options"]["expires"] == float(settings.ZONES["SYNC_INTERVAL"])
    scheduler = Scheduler(app, lazy=True)
    scheduler.setup_schedule()
    beat_entry = scheduler.schedule["zones-sync"]
    assert beat_entry.task in app.tasks
    assert beat_entry.schedule.run_every == timedelta(seconds=settings.ZONES["SYNC_INTERVAL"])


def test_task_retries_source_errors_with_exponential_backoff():
    assert zone_sync_task.autoretry_for == (ZoneSourceError,)
    assert zone_sync_task.retry_backoff == tasks.RETRY_BACKOFF == 60
    assert zone_sync_task.retry_backoff_max == 1800
    assert zone_sync_task.retry_jitter is True
    assert zone_sync_task.max_retries == tasks.MAX_RETRIES == 5
    assert zone_sync_task.acks_late is True


# -- behaviour (tasks run in this process) -----------------------------------------------


def test_task_syncs_and_returns_the_outcome(organizations):
    organizations("acme", "globex", "initech")
    result = zone_sync_task.apply()
    assert result.get()["status"] == "ok"
    assert runs("ok") == 1


def test_task_backs_off_while_another_sync_holds_the_lock(organizations):
    organizations("acme", "globex", "initech")
    token = cache.lock_acquire(services.SYNC_LOCK, ttl=60)
    assert token is not None
    try:
        outcome = zone_sync_task.apply().get()
    finally:
        cache.lock_release(services.SYNC_LOCK, token)
    assert outcome["status"] == "skipped"
    assert runs() == 0
    # Released: the next one runs.
    assert zone_sync_task.apply().get()["status"] == "ok"


def test_lock_is_released_when_the_sync_raises(organizations, monkeypatch):
    def boom(**_):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "zone_sync", boom)
    with pytest.raises(RuntimeError):
        zone_sync_task.apply()
    assert cache.lock_acquire(services.SYNC_LOCK, ttl=1) is not None


def test_source_errors_are_retried_then_given_up(bigquery, organizations, monkeypatch):
    organizations("a")
    bigquery.mode = "error404_table"
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)
    result = zone_sync_task.apply()  # eager: retries run at once, each recording its run
    assert result.state == "FAILURE"
    assert isinstance(result.result, ZoneSourceError) and "not found" in str(result.result)
    assert runs("failed") == tasks.MAX_RETRIES + 1


def test_bad_data_is_not_retried(bigquery, organizations):
    organizations("a")
    bigquery.rows = [("nobody", "Z1", "Zone")] * 5
    assert zone_sync_task.apply().get()["failure"] == "data"
    assert runs("failed") == 1


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """Tasks that would be sent to the broker (recorded, not sent)."""
    calls: list[str] = []
    monkeypatch.setattr(services, "_send", lambda *, source=None, reason="": calls.append(reason))
    return calls


def ok_run(age: timedelta) -> ZoneSyncRun:
    finished = timezone.now() - age
    return ZoneSyncRun.objects.create(started_at=finished, finished_at=finished, source="fixture", status="ok")


def test_worker_start_preloads_a_missing_snapshot(sent):
    worker_ready.send(sender=None)
    assert sent == ["worker start"]


def test_worker_start_preloads_a_snapshot_older_than_the_interval(sent, settings):
    ok_run(timedelta(seconds=settings.ZONES["SYNC_INTERVAL"] + 5))
    assert services.zone_sync_preload() is True
    assert sent == ["worker start"]


def test_worker_start_leaves_a_fresh_snapshot(sent, settings):
    ok_run(timedelta(seconds=settings.ZONES["SYNC_INTERVAL"] - 60))
    assert services.zone_sync_preload() is False
    assert sent == []


def test_enqueue_without_broker_runs_inline_and_returns_the_outcome(organizations, monkeypatch, sent):
    organizations("acme", "globex", "initech")
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    outcome = services.zone_sync_enqueue()
    assert outcome["status"] == "ok" and outcome["rows"] > 0
    assert sent == []


def test_enqueue_with_broker_queues_after_commit(monkeypatch, sent):
    from django.db import transaction

    monkeypatch.setitem(app.conf, "task_always_eager", False)
    with transaction.atomic():
        assert services.zone_sync_enqueue() == {"status": "queued"}
        assert sent == []  # not before the commit
    assert sent == ["requested"]
    assert runs() == 0


# -- real workers on the Redis broker ---------------------------------------------------------


@pytest.fixture
def broker(settings) -> Iterator[None]:
    if not settings.CELERY_BROKER_URL or app.conf.task_always_eager:
        service_missing("no Celery broker configured (REDIS_URL / CELERY_BROKER_URL)")
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        service_missing(f"broker unreachable: {exc}")
    app.control.purge()  # messages left by earlier tests
    yield
    app.control.purge()


@pytest.fixture
def finished_tasks() -> Iterator[list[dict]]:
    """Return values of tasks finished by in-process workers."""
    results: list[dict] = []

    def record(retval=None, state=None, **_):
        results.append(retval if isinstance(retval, dict) else {"state": state, "retval": repr(retval)})
        close_old_connections()

    task_postrun.connect(record, weak=False)
    yield results
    task_postrun.disconnect(record)


@pytest.mark.slow
@pytest.mark.services
def test_two_concurrent_syncs_on_a_real_worker_one_runs_one_backs_off(
    broker, bigquery, organizations, finished_tasks, settings
):
    organizations(*(f"org-{i}" for i in range(5)))
    bigquery.rows = mappings(5, 3)
    bigquery.mode, bigquery.slow_methods, bigquery.delay = "slow", frozenset({"jobs.getQueryResults"}), 1.0
    settings.ZONES = {**settings.ZONES, "BIGQUERY_TIMEOUT": 10.0}

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30):
        zone_sync_task.delay()
        zone_sync_task.delay()
        wait_until(lambda: len(finished_tasks) == 2)

    assert sorted(result["status"] for result in finished_tasks) == ["ok", "skipped"]
    assert runs() == 1 and runs("ok") == 1
    assert ZoneAssignment.objects.count() == 15


@pytest.mark.slow
@pytest.mark.services
def test_real_worker_preloads_on_start_then_runs_queued_syncs_end_to_end(
    broker, bigquery, organizations, celery_process
):
    organizations(*(f"org-{i}" for i in range(4)))
    bigquery.rows = mappings(4, 2)
    worker = celery_process(
        "worker",
        ZONE_SOURCE="bigquery",
        BIGQUERY_PROJECT="fake-project",
        BIGQUERY_ZONE_TABLE=TABLE,
        BIGQUERY_API_ENDPOINT=bigquery.url,
    )

    # No snapshot yet: the worker queues a sync as soon as it is ready, and runs it.
    try:
        wait_until(lambda: runs("ok") == 1, timeout=30)
    except AssertionError:
        raise AssertionError(worker.log.read_text()[-3000:]) from None
    assert set(ZoneAssignment.objects.values_list("organization__slug", "zone__code", "zone__name")) == set(
        bigquery.rows
    )

    bigquery.rows = mappings(4, 3)
    zone_sync_task.delay()
    wait_until(lambda: runs("ok") == 2, timeout=30)
    assert ZoneAssignment.objects.count() == 12

    bigquery.mode = "error404_table"
    zone_sync_task.delay()  # fails, is retried later (backoff), keeps the snapshot
    wait_until(lambda: runs("failed") >= 1, timeout=30)
    assert ZoneAssignment.objects.count() == 12
    assert "not found" in ZoneSyncRun.objects.filter(status="failed").first().error  # type: ignore[union-attr]


@pytest.mark.services
def test_concurrent_service_calls_one_runs_one_skips(postgres, organizations, bigquery, settings):
    """The same lock without a worker: two threads in this process."""
    organizations("a")
    bigquery.rows = [("a", "EU", "Europe")]
    bigquery.mode, bigquery.slow_methods, bigquery.delay = "slow", frozenset({"jobs.getQueryResults"}), 0.5
    settings.ZONES = {**settings.ZONES, "BIGQUERY_TIMEOUT": 10.0}
    outcomes: list[str] = []

    def run() -> None:
        try:
            outcomes.append(services.zone_sync_exclusive().status)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["ok", "skipped"]


def test_the_schedule_marks_its_syncs_as_scheduled():
    assert app.conf.beat_schedule["zones-sync"]["kwargs"] == {"scheduled": True}


@pytest.mark.django_db(transaction=True)
def test_a_second_tick_in_the_same_interval_is_skipped_and_a_retry_is_not_a_tick(settings):
    settings.ZONES = {**settings.ZONES, "SYNC_INTERVAL": 60}
    first = zone_sync_task.apply(kwargs={"scheduled": True}).get()
    second = zone_sync_task.apply(kwargs={"scheduled": True}).get()
    assert first["status"] != "skipped" and first["run_id"]
    assert second["status"] == "skipped" and second["error"] == "already run in this interval"
    assert zone_sync_task.apply(kwargs={"scheduled": False}).get()["status"] != "skipped"  # a staff or request sync
    retried = zone_sync_task.apply(kwargs={"scheduled": True}, retries=1).get()
    assert retried["status"] != "skipped"
    assert runs() == 3


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_beats_running_at_once_still_give_one_sync_per_interval(broker, celery_process):
    """Redundant schedulers: two beat processes, started out of phase, each ticking every 2 s."""
    interval = 2.0
    env = {"ZONE_SYNC_INTERVAL": str(int(interval))}
    worker = celery_process("worker", **env)
    wait_until(lambda: runs() >= 1, timeout=30)  # the worker's own preload (of the bundled sample)
    started = timezone.now()
    celery_process("beat", **env)
    time.sleep(interval * 0.45)
    celery_process("beat", **env)
    time.sleep(interval * 4.5)
    scheduled = list(
        ZoneSyncRun.objects.filter(started_at__gt=started).order_by("started_at").values_list("started_at", flat=True)
    )
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(scheduled)]
    assert 3 <= len(scheduled) <= 6, (scheduled, worker.log.read_text()[-2000:])  # type: ignore[attr-defined]
    assert all(gap >= interval * 0.9 - 0.25 for gap in gaps), gaps  # never two in one interval
