"""Reads: cache statistics across every process sharing the cache, and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cachemgmt import cache, hooks
from cachemgmt.carrier import carrier_report
from cachemgmt.models import CacheAuditEntry


def iso(value: datetime | None) -> str | None:
    """A UTC timestamp as the API writes it: ``2026-11-28T12:00:00Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
    zones.update(hooks.namespace_details("zones"))
    return {
        "backend": cache.backend_name(),
        "since": iso(datetime.fromtimestamp(store.stats_since(), tz=UTC)),
        "namespaces": {"user_context": user_context, "zones": zones},
        "server": store.server_info(),
        "carrier": carrier_report(),
    }


def audit_entries_recent(*, limit: int = 10) -> list[CacheAuditEntry]:
    return list(CacheAuditEntry.objects.order_by("-created_at", "-id")[:limit])
