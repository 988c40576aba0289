"""Celery tasks of the zones app: the scheduled sync, and its preload when a worker starts."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from zones import services
from zones.sources import ZoneSourceError

# A failing source is retried with exponential backoff (60 s, 120 s, ... capped at 30 min,
# jittered); data errors are not retried: the same rows would fail the same way.
RETRY_BACKOFF = 60
RETRY_BACKOFF_MAX = 1800
MAX_RETRIES = 5


@shared_task(
    name="zones.tasks.zone_sync_task",
    bind=True,
    autoretry_for=(ZoneSourceError,),
    retry_backoff=RETRY_BACKOFF,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
    acks_late=True,
    ignore_result=True,
)
def zone_sync_task(self: Any, source: str | None = None, scheduled: bool = False) -> dict[str, Any]:
    """One sync; at most one runs at a time anywhere (a concurrent one returns "skipped").

    ``scheduled`` (beat's ticks): one per interval however many beats run; a retry of the
    interval's sync is not a new tick.
    """
    if scheduled and not self.request.retries:
        outcome = services.zone_sync_scheduled(source=source)
    else:
        outcome = services.zone_sync_exclusive(source=source)
    outcome.raise_for_source_error()
    return outcome.as_dict()


@worker_ready.connect(dispatch_uid="zones-preload-on-worker-ready")
def _zone_sync_preload_on_worker_ready(**_: Any) -> None:
    # Not a cache-invalidation signal: the worker's start-up hook, so a fresh deployment
    # (or one down longer than an interval) gets its snapshot without waiting for beat.
    from django.db import close_old_connections

    try:
        services.zone_sync_preload()
    finally:
        close_old_connections()
