"""Reads: cache statistics across every process sharing the cache, and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cachemgmt import cache
from cachemgmt.models import CacheAuditEntry


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def zone_last_sync_get() -> dict[str, Any] | None:
    """The most recent zone sync run (running ones included), or None before the first."""
    from zones.models import ZoneSyncRun

    run = ZoneSyncRun.objects.order_by("-started_at", "-id").values("status", "finished_at", "rows").first()
    if run is None:
        return None
    return {"status": run["status"], "finished_at": _iso(run["finished_at"]), "rows": run["rows"]}


def _namespace_stats(store: cache.Store, namespace: str) -> dict[str, Any]:
    counters = cache.stats_read(namespace)
    hits, misses = counters.get("hits", 0), counters.get("misses", 0)
    lookups = hits + misses
    return {
        "hits": hits,
        "misses": misses,
        "hit_ratio": round(hits / lookups, 4) if lookups else 0.0,
        "near_hits": counters.get("near_hits", 0),
        "fills": counters.get("fills", 0),
        "invalidations": counters.get("invalidations", 0),
        "keys": store.count_entries(namespace),
    }


def cache_stats_get() -> dict[str, Any]:
    """The contract's statistics; counters are the sum over every process (this one flushed first).

    Raises ``cache.CacheUnavailable`` when the shared cache cannot be read.
    """
    store = cache.get_store()
    user_context = _namespace_stats(store, "user_context")
    zones = _namespace_stats(store, "zones")
    zones["last_sync"] = zone_last_sync_get()
    return {
        "backend": cache.backend_name(),
        "since": _iso(datetime.fromtimestamp(store.stats_since(), tz=UTC)),
        "namespaces": {"user_context": user_context, "zones": zones},
        "server": store.server_info(),
    }


def audit_entries_recent(*, limit: int = 10) -> list[CacheAuditEntry]:
    return list(CacheAuditEntry.objects.order_by("-created_at", "-id")[:limit])
