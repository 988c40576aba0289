"""Reads: cache statistics across every process sharing the cache, and the audit trail."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from cachemgmt import cache, hooks
from cachemgmt.carrier import (
    HEARTBEAT,
    TRUST_SECONDS,
    cache_trusted,
    carrier_enabled,
    carrier_status,
    newest_change_id,
)
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


def carrier_report(*, count_pending: bool = True) -> dict[str, Any]:
    """What operators read (statistics, health, metrics, the admin page): this process's role,
    and how far the carrier serving it is behind.

    ``lag_seconds`` is how long ago the carrier was last known caught up (the deployment's
    leader's last pass that left nothing pending with a shared cache; this process's own
    carrier's, or a request's check of its quiet socket, otherwise; None when none has run);
    ``pending`` counts recorded changes after its cursor.
    """
    status = carrier_status()
    caught_up_at: float | None = status.caught_up_at or None
    cursor = status.cursor
    if cache.backend_name() == "redis" and status.role != "leader":
        try:
            raw = cache.shared_get(HEARTBEAT)
        except cache.CacheUnavailable:
            raw = None
        if raw is not None:
            beat = json.loads(raw)
            caught_up_at, cursor = float(beat[0]), int(beat[1])
    lag = None if caught_up_at is None else round(max(0.0, time.time() - caught_up_at), 3)
    pending = max(0, newest_change_id() - cursor) if count_pending and caught_up_at is not None else None
    return {
        "role": status.role if carrier_enabled() else "off",
        "trusted": cache_trusted(),
        "cursor": cursor,
        "pending": pending,
        "lag_seconds": lag,
        "bound_seconds": TRUST_SECONDS,
    }
