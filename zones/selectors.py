"""Reads: an organization's zones (cache, then database) and the state of the zones snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from cachemgmt import cache
from cachemgmt.carrier import cache_trusted
from cachemgmt.health import Degraded
from cachemgmt.selectors import iso
from zones.conf import zones_settings
from zones.models import ZoneAssignment, ZoneSyncRun

NAMESPACE = "zones"

READY, STALE, PENDING = "ready", "stale", "pending"

# A snapshot is overdue (contexts say "stale", requests ask for a sync) this many sync
# intervals after the last good sync: one missed beat is tolerated, two are not.
OVERDUE_INTERVALS = 1.5


def organization_zones_get(*, organization_id: int) -> list[dict[str, str]]:
    """The organization's zones as ``[{"code", "name"}]`` sorted by code.

    Cached per organization in the "zones" namespace for ``ZONE_CACHE_TTL``; an entry is
    defeated by a change of the organization's assignments (its organization key) or of
    any zone (the global zones key), both bumped by the sync after it commits.
    """
    if not cache_trusted():  # the carrier is down or behind (see cachemgmt.carrier)
        return organization_zones_load(organization_ids=[organization_id]).get(organization_id, [])
    result = cache.entry_get(NAMESPACE, organization_id)
    if isinstance(result, cache.Hit):
        return list(json.loads(result.payload))
    zones = organization_zones_load(organization_ids=[organization_id]).get(organization_id, [])
    organization_zones_put(organization_id=organization_id, zones=zones, miss=result)
    return zones


def organization_zones_load(*, organization_ids: Iterable[int]) -> dict[int, list[dict[str, str]]]:
    """Zones of several organizations from the database: one query."""
    zones: dict[int, list[dict[str, str]]] = {}
    rows = (
        ZoneAssignment.objects.filter(organization_id__in=list(organization_ids))
        .order_by("organization_id", "zone__code")
        .values_list("organization_id", "zone__code", "zone__name")
    )
    for organization_id, code, name in rows:
        zones.setdefault(organization_id, []).append({"code": code, "name": name})
    return zones


def organization_zones_put(*, organization_id: int, zones: list[dict[str, str]], miss: cache.Miss) -> bool:
    """Store a fill read after ``miss`` was taken (refused when an invalidation overtook it)."""
    return cache.entry_put(
        NAMESPACE,
        organization_id,
        miss=miss,
        deps=[cache.dep_organization_key(organization_id), cache.dep_zones_key()],
        payload=json.dumps(zones, separators=(",", ":")).encode(),
        ttl=int(zones_settings.CACHE_TTL),
    )


@dataclass(frozen=True, slots=True)
class ZoneSnapshotState:
    """Where the zones snapshot stands; ``status`` follows the user context's ``zones_status``."""

    status: str  # ready | stale | pending
    last_ok_at: datetime | None
    age_seconds: float | None
    last_run_status: str | None  # of the last finished run
    last_error: str
    running: bool

    @property
    def missing(self) -> bool:
        return self.last_ok_at is None

    def older_than(self, seconds: float) -> bool:
        return self.age_seconds is None or self.age_seconds >= seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "last_ok_at": self.last_ok_at.isoformat() if self.last_ok_at else None,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "last_run_status": self.last_run_status,
            "last_error": self.last_error,
            "running": self.running,
        }


def zone_snapshot_state(*, now: Callable[[], datetime] = timezone.now) -> ZoneSnapshotState:
    """The last good sync, its age and the resulting status (three small indexed queries, no cache).

    ``pending`` before any good sync; ``stale`` when the last finished run failed or the
    last good one is older than 1.5 sync intervals; ``ready`` otherwise.
    """
    current = now()
    last_ok = (
        ZoneSyncRun.objects.filter(status=ZoneSyncRun.Status.OK, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    finished = (
        ZoneSyncRun.objects.exclude(status=ZoneSyncRun.Status.RUNNING)
        .order_by("-started_at", "-id")
        .values("status", "error")
        .first()
    )
    # A run whose worker died stays "running"; past the lock's lifetime it no longer counts.
    running = ZoneSyncRun.objects.filter(
        status=ZoneSyncRun.Status.RUNNING,
        started_at__gte=current - timedelta(seconds=int(zones_settings.SYNC_LOCK_TTL)),
    ).exists()
    last_status = finished["status"] if finished else None
    age = None if last_ok is None else (current - last_ok).total_seconds()
    return ZoneSnapshotState(
        status=snapshot_status(age_seconds=age, last_run_status=last_status),
        last_ok_at=last_ok,
        age_seconds=age,
        last_run_status=last_status,
        last_error=finished["error"] if finished and last_status == ZoneSyncRun.Status.FAILED else "",
        running=running,
    )


def snapshot_status(*, age_seconds: float | None, last_run_status: str | None) -> str:
    """The rule behind ``zones_status`` (the user context applies the same one in SQL)."""
    if age_seconds is None:
        return PENDING
    if last_run_status == ZoneSyncRun.Status.FAILED or age_seconds >= OVERDUE_INTERVALS * int(
        zones_settings.SYNC_INTERVAL
    ):
        return STALE
    return READY


def zone_last_sync_get() -> dict[str, Any]:
    """``{"last_sync": ...}`` for the cache statistics: the most recent run (running ones
    included), or None before the first."""
    run = (
        ZoneSyncRun.objects.order_by("-started_at", "-id")
        .values("id", "status", "finished_at", "rows", "error")
        .first()
    )
    if run is None:
        return {"last_sync": None}
    last = {"status": run["status"], "finished_at": iso(run["finished_at"]), "rows": run["rows"], "run_id": run["id"]}
    if run["error"]:
        last["error"] = run["error"]
    return {"last_sync": last}


def zone_snapshot_health(now: Callable[[], datetime]) -> dict[str, Any]:
    """The readiness check of the snapshot: degraded with no successful sync, or one older than
    1.5 sync intervals."""
    last_ok = (
        ZoneSyncRun.objects.filter(status=ZoneSyncRun.Status.OK, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    limit = OVERDUE_INTERVALS * int(zones_settings.SYNC_INTERVAL)
    if last_ok is None:
        raise Degraded({"age_seconds": None, "detail": "no successful zone sync yet"})
    age = round((now() - last_ok).total_seconds(), 1)
    if age > limit:
        raise Degraded({"age_seconds": age, "detail": f"last successful sync older than {limit:.0f}s"})
    return {"age_seconds": age}


def zone_snapshot_exists() -> bool:
    """Whether a sync ever succeeded or any mapping is held (a snapshot someone may rely on)."""
    return ZoneSyncRun.objects.filter(status=ZoneSyncRun.Status.OK).exists() or ZoneAssignment.objects.exists()


def zone_sync_counts() -> dict[str, int]:
    """Recorded syncs by status (one grouped query)."""
    rows = ZoneSyncRun.objects.order_by().values_list("status").annotate(n=Count("id"))
    return {str(status): int(n) for status, n in rows}
