"""The one owner of the cache: key layout, versioned entries, invalidation, counters, circuit breaker."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connection, transaction

from cachemgmt.cache.breaker import CircuitBreaker
from cachemgmt.cache.keys import (
    NAMESPACES,
    clock_key,
    dep_organization_key,
    dep_permissions_key,
    dep_role_key,
    dep_user_key,
    dep_zones_key,
    entry_key,
    fill_lock_key,
    namespace_key,
    near_lease_key,
    stats_key,
    stats_since_key,
    task_lock_key,
    throttle_key,
    tracked_prefixes,
)
from cachemgmt.cache.limits import (
    lock_acquire,
    lock_release,
    lock_renew,
    shared_get,
    shared_set,
    window_get,
    window_release,
    window_reserve,
    window_ttl,
)
from cachemgmt.cache.local import LocalStore
from cachemgmt.cache.near import NearCache
from cachemgmt.cache.redis_store import RedisStore
from cachemgmt.cache.stats import STATS_FLUSH_SECONDS, count, stats_discard, stats_flush, stats_read
from cachemgmt.cache.store import FILL_POLL_SECONDS, FILL_WAIT_SECONDS, CacheUnavailable, Hit, Miss, Store

__all__ = [
    "NAMESPACES",
    "STATS_FLUSH_SECONDS",
    "CacheUnavailable",
    "CircuitBreaker",
    "Hit",
    "LocalStore",
    "Miss",
    "NearCache",
    "PendingInvalidation",
    "RedisStore",
    "Store",
    "backend_name",
    "clock_key",
    "count",
    "dep_organization_key",
    "dep_permissions_key",
    "dep_role_key",
    "dep_user_key",
    "dep_zones_key",
    "deps_bump",
    "deps_bump_on_commit",
    "entry_get",
    "entry_key",
    "entry_put",
    "fill_lock_key",
    "get_store",
    "invalidations_pending",
    "lock_acquire",
    "lock_release",
    "lock_renew",
    "namespace_clear",
    "namespace_key",
    "near_lease_key",
    "redis_configured",
    "reset_store",
    "shared_get",
    "shared_set",
    "stats_flush",
    "stats_key",
    "stats_read",
    "stats_since_key",
    "task_lock_key",
    "throttle_key",
    "tracked_prefixes",
    "window_get",
    "window_release",
    "window_reserve",
    "window_ttl",
]

logger = logging.getLogger("cachemgmt.cache")

_store: Store | None = None
_store_lock = threading.Lock()


def redis_configured() -> bool:
    """Django's cache is Redis (``REDIS_URL`` or ``REDIS_SENTINELS``): the shared store."""
    return bool(settings.CACHES.get("default", {}).get("BACKEND") == "django_redis.cache.RedisCache")


def get_store() -> Store:
    global _store
    store = _store
    if store is None:
        with _store_lock:
            if _store is None:
                _store = RedisStore() if redis_configured() else LocalStore()
            store = _store
    return store


def reset_store(store: Store | None = None) -> None:
    """Drop the process's store (tests, settings changes); the next call builds a new one."""
    global _store
    with _store_lock:
        previous, _store = _store, store
    if isinstance(previous, RedisStore) and previous is not store:
        previous.close()
    stats_discard()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in {"REDIS_URL", "REDIS_SENTINELS", "CACHES", "CACHEMGMT"}:
        reset_store()


setting_changed.connect(_on_setting_changed)


def backend_name() -> str:
    return get_store().backend


def jittered_ttl(ttl: int) -> int:
    """The TTL is only a backstop; jitter spreads expiries so they do not stampede together."""
    return max(1, int(ttl * random.uniform(0.9, 1.0)))


def entry_get(namespace: str, ident: int | str, *, single_flight: bool = True) -> Hit | Miss:
    """Look an entry up; on a miss, say whether this caller should fill it (single flight).

    A follower (another caller is filling) waits up to ``FILL_WAIT_SECONDS`` for the filler's
    result, then fills on its own so a crashed filler cannot stall requests.
    """
    store = get_store()
    key = entry_key(namespace, ident)
    lock = fill_lock_key(namespace, ident) if single_flight else None
    try:
        result = store.get(key, lock_key=lock)
        if isinstance(result, Miss) and lock is not None and not result.leader:
            deadline = time.monotonic() + FILL_WAIT_SECONDS
            while isinstance(result, Miss) and not result.leader and time.monotonic() < deadline:
                time.sleep(FILL_POLL_SECONDS)
                result = store.get(key, lock_key=lock)
    except CacheUnavailable:
        count(namespace, "misses")
        return Miss(ticket=None, leader=True)
    if isinstance(result, Hit):
        count(namespace, "hits", also="near_hits" if result.near else None)
    else:
        count(namespace, "misses")
    return result


def entry_put(namespace: str, ident: int | str, *, miss: Miss, deps: Sequence[str], payload: bytes, ttl: int) -> bool:
    """Store a fill made after ``miss``; refused when an invalidation has overtaken it."""
    if miss.ticket is None:
        return False
    deps = [namespace_key(namespace), *deps]
    try:
        stored = get_store().put(
            entry_key(namespace, ident),
            ticket=miss.ticket,
            deps=deps,
            payload=payload,
            ttl=jittered_ttl(ttl),
            lock_key=fill_lock_key(namespace, ident),
            lock_token=miss.lock_token,
        )
    except CacheUnavailable:
        return False
    if stored:
        count(namespace, "fills")
    return stored


def deps_bump(deps: Sequence[str], *, namespace: str = "user_context") -> None:
    """Defeat every entry built from any of ``deps`` (one round trip whatever their number)."""
    if not deps:
        return
    try:
        get_store().bump(list(dict.fromkeys(deps)))
    except CacheUnavailable:
        logger.warning("cache invalidation not delivered; entries are cleared when the cache recovers")
        return
    count(namespace, "invalidations", len(deps))


class PendingInvalidation:
    """An on-commit callback bumping dependency keys; its presence marks uncommitted changes."""

    __slots__ = ("deps",)

    def __init__(self, deps: list[str]) -> None:
        self.deps = deps

    def __call__(self) -> None:
        deps_bump(self.deps)


# Set by a thread that registered an invalidation, cleared once none is pending: most requests
# never write, and this spares them a look at the connection's on-commit list.
_maybe_pending = threading.local()


def deps_bump_on_commit(deps: list[str]) -> None:
    """``deps_bump`` once the current transaction commits (at once outside a transaction)."""
    _maybe_pending.value = True
    transaction.on_commit(PendingInvalidation(deps))


def invalidations_pending() -> bool:
    """True inside a transaction that registered invalidations not yet committed."""
    if not getattr(_maybe_pending, "value", False):
        return False
    callbacks = connection.run_on_commit if connection.in_atomic_block else ()
    if any(isinstance(entry[1], PendingInvalidation) for entry in callbacks):
        return True
    _maybe_pending.value = False
    return False


def namespace_clear(namespace: str) -> None:
    deps_bump([namespace_key(namespace)], namespace=namespace)
