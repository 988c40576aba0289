"""Throttle windows and task locks shared by every process, through Django's cache."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import caches

from cachemgmt import cache  # get_store and backend_name are looked up on the package, where tests may replace them
from cachemgmt.cache.keys import task_lock_key
from cachemgmt.cache.redis_store import RedisStore
from cachemgmt.cache.store import CacheUnavailable

_fallback_counters: dict[str, tuple[int, float]] = {}
_fallback_lock = threading.Lock()


def _django_cache() -> Any:
    return caches["default"]


def _shared(fn: Callable[[Any], Any]) -> Any:
    """Run ``fn`` on Django's cache behind the same circuit breaker as the context store."""
    store = cache.get_store()
    if isinstance(store, RedisStore):
        return store.guarded(lambda: fn(_django_cache()))
    return fn(_django_cache())


# Atomic on the server: the count and its expiry are set together, so a burst of concurrent
# attempts sees 1, 2, 3, ... and never two of them the same number.
_RESERVE_LUA = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""
# Never re-creates an expired counter (a DECR on a missing key would leave -1 with no expiry).
_RELEASE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""
_local_window_lock = threading.Lock()


def window_reserve(key: str, *, window: int) -> int:
    """Add one to a counter living ``window`` seconds from its first use; returns the new count.

    Atomic across every process on the cache: callers compare the returned count with their
    limit, so concurrent callers can never all see a count under it.
    """

    def reserve(c: Any) -> int:
        if cache.backend_name() == "redis":
            client = c.client.get_client(write=True)
            return int(client.eval(_RESERVE_LUA, 1, c.client.make_key(key), window * 1000))
        with _local_window_lock:
            if c.add(key, 1, timeout=window):
                return 1
            try:
                return int(c.incr(key))
            except ValueError:  # expired between the two calls
                c.set(key, 1, timeout=window)
                return 1

    try:
        return int(_shared(reserve))
    except CacheUnavailable:  # unreachable cache: count in this process
        return _fallback_incr(key, window)


def window_release(key: str) -> None:
    """Give back one ``window_reserve`` (an attempt that turned out not to count)."""

    def release(c: Any) -> None:
        if cache.backend_name() == "redis":
            c.client.get_client(write=True).eval(_RELEASE_LUA, 1, c.client.make_key(key))
            return
        with _local_window_lock, contextlib.suppress(ValueError):
            c.decr(key)

    try:
        _shared(release)
    except CacheUnavailable:
        _fallback_release(key)


def window_get(key: str) -> int:
    try:
        return max(int(_shared(lambda c: c.get(key) or 0)), _fallback_get(key))
    except CacheUnavailable:
        return _fallback_get(key)


def window_ttl(key: str, default: int) -> int:
    try:
        ttl = _shared(lambda c: c.ttl(key) if hasattr(c, "ttl") else None)
    except CacheUnavailable:
        return default
    return ttl if isinstance(ttl, int) and ttl > 0 else default


def _fallback_get(key: str) -> int:
    with _fallback_lock:
        value, expires = _fallback_counters.get(key, (0, 0.0))
        return value if expires > time.monotonic() else 0


def _fallback_incr(key: str, window: int) -> int:
    now = time.monotonic()
    with _fallback_lock:
        value, expires = _fallback_counters.get(key, (0, 0.0))
        if expires <= now:
            value, expires = 0, now + window
        value += 1
        _fallback_counters[key] = (value, expires)
        return value


def _fallback_release(key: str) -> None:
    with _fallback_lock:
        value, expires = _fallback_counters.get(key, (0, 0.0))
        if value > 0:
            _fallback_counters[key] = (value - 1, expires)


def lock_acquire(name: str, *, ttl: float) -> str | None:
    """A lock with an expiry shared by every process on the cache; returns its token or None.

    Raises CacheUnavailable when the cache cannot be reached: the caller decides whether to
    run without the lock.
    """
    token = secrets.token_hex(16)
    return token if _shared(lambda c: c.add(task_lock_key(name), token, timeout=ttl)) else None


def lock_release(name: str, token: str) -> None:
    key = task_lock_key(name)

    def release(c: Any) -> None:
        if c.get(key) == token:
            c.delete(key)

    with contextlib.suppress(CacheUnavailable):  # else the lock expires by itself
        _shared(release)


# Extends a lock only while its holder still owns it (a check and a set in one step).
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def lock_renew(name: str, token: str, *, ttl: int) -> bool:
    """Extend a lock this holder still owns by ``ttl`` seconds; False when it was lost."""
    key = task_lock_key(name)

    def renew(c: Any) -> bool:
        if cache.backend_name() == "redis":
            client = c.client.get_client(write=True)
            # The value as django-redis stored it (its serializer), compared on the server.
            stored = c.client.encode(token)
            return bool(client.eval(_RENEW_LUA, 1, c.client.make_key(key), stored, ttl * 1000))
        with _local_window_lock:
            if c.get(key) == token:
                return bool(c.touch(key, timeout=ttl))
            return False

    return bool(_shared(renew))


def shared_get(name: str) -> Any:
    """A small value every process on the cache shares (the carrier's cursor and heartbeat)."""
    return _shared(lambda c: c.get(task_lock_key(name)))


def shared_set(name: str, value: Any, *, ttl: int | None = None) -> None:
    _shared(lambda c: c.set(task_lock_key(name), value, timeout=ttl))
