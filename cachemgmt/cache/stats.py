"""Hit, miss, fill and invalidation counters: counted in the process, flushed to the shared store."""

from __future__ import annotations

import threading
import time

from cachemgmt import cache  # get_store is looked up on the package, where tests may replace it
from cachemgmt.cache.store import CacheUnavailable

# Counters are kept per process and flushed to the shared store every few seconds, so the
# request path adds a fraction of a command, not one per request.
STATS_FLUSH_SECONDS = 2.0
_local_counters: dict[str, dict[str, int]] = {}
_counters_lock = threading.Lock()
_last_flush = [time.monotonic()]


def count(namespace: str, name: str, delta: int = 1, *, also: str | None = None) -> None:
    """Add ``delta`` to counter ``name`` (and to ``also``, under the same lock)."""
    with _counters_lock:
        bucket = _local_counters.setdefault(namespace, {})
        bucket[name] = bucket.get(name, 0) + delta
        if also is not None:
            bucket[also] = bucket.get(also, 0) + delta
    if time.monotonic() - _last_flush[0] >= STATS_FLUSH_SECONDS:
        stats_flush()


def stats_flush() -> None:
    with _counters_lock:
        pending = {ns: dict(values) for ns, values in _local_counters.items() if values}
        _local_counters.clear()
        _last_flush[0] = time.monotonic()
    store = cache.get_store()
    for namespace, deltas in pending.items():
        try:
            store.incr_stats(namespace, deltas)
        except CacheUnavailable:
            with _counters_lock:  # keep them for the next flush
                bucket = _local_counters.setdefault(namespace, {})
                for name, delta in deltas.items():
                    bucket[name] = bucket.get(name, 0) + delta


def stats_read(namespace: str) -> dict[str, int]:
    stats_flush()
    return cache.get_store().read_stats(namespace)


def stats_discard() -> None:
    """Forget the counts not flushed yet (the store they were meant for is gone)."""
    _local_counters.clear()
