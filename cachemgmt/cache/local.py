"""The in-process store: the Redis store's rules for a single process (the demo, tests)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from cachemgmt.cache.store import FILL_LOCK_MS, Hit, Miss


def _now_us() -> int:
    return time.time_ns() // 1000


class LocalStore:
    """In-process store with the same rules as the Redis one (for one process: the demo, tests)."""

    backend = "locmem"

    def __init__(self, max_entries: int = 100_000) -> None:
        self._lock = threading.RLock()
        self._clock = _now_us()
        self._deps: dict[str, int] = {}
        self._entries: dict[str, tuple[int, tuple[str, ...], bytes, float]] = {}
        self._fill_locks: dict[str, tuple[str, float]] = {}
        self._stats: dict[str, dict[str, int]] = {}
        self._since = time.time()
        self._max_entries = max_entries

    def _fresh(self, ticket: int, deps: Iterable[str]) -> bool:
        for dep in deps:
            value = self._deps.get(dep)
            if value is None or value > ticket:
                return False
        return True

    def get(self, key: str, *, lock_key: str | None) -> Hit | Miss:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                ticket, deps, payload, expires = entry
                if expires > now and self._fresh(ticket, deps):
                    return Hit(payload)
                del self._entries[key]
            leader, token = False, ""
            if lock_key is not None:
                held = self._fill_locks.get(lock_key)
                if held is None or held[1] <= now:
                    token = secrets.token_hex(8)
                    self._fill_locks[lock_key] = (token, now + FILL_LOCK_MS / 1000)
                    leader = True
            return Miss(ticket=self._clock, leader=leader, lock_token=token)

    def put(
        self,
        key: str,
        *,
        ticket: int,
        deps: Sequence[str],
        payload: bytes,
        ttl: int,
        lock_key: str | None,
        lock_token: str,
    ) -> bool:
        with self._lock:
            if lock_key is not None and lock_token and self._fill_locks.get(lock_key, ("",))[0] == lock_token:
                del self._fill_locks[lock_key]
            if any(self._deps.get(dep, ticket) > ticket for dep in deps):
                return False
            for dep in deps:
                self._deps.setdefault(dep, ticket)
            if len(self._entries) >= self._max_entries and key not in self._entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (ticket, tuple(deps), payload, time.monotonic() + ttl)
            return True

    def bump(self, deps: Sequence[str]) -> None:
        with self._lock:
            self._clock += 1
            for dep in deps:
                self._deps[dep] = self._clock

    def count_entries(self, namespace: str) -> int | None:
        marker = f":e:{namespace}:"
        now = time.monotonic()
        with self._lock:
            return sum(
                1
                for key, (ticket, deps, _, expires) in self._entries.items()
                if marker in key and expires > now and self._fresh(ticket, deps)
            )

    def incr_stats(self, namespace: str, deltas: dict[str, int]) -> None:
        with self._lock:
            bucket = self._stats.setdefault(namespace, {})
            for name, delta in deltas.items():
                bucket[name] = bucket.get(name, 0) + delta

    def read_stats(self, namespace: str) -> dict[str, int]:
        with self._lock:
            return dict(self._stats.get(namespace, {}))

    def stats_since(self) -> float:
        return self._since

    def server_info(self) -> dict[str, Any] | None:
        return None
