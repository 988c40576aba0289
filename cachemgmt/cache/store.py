"""The store contract: what every store does, and what its reads return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# How long a filler holds the single-flight lock, and how long others wait for its result
# before querying the database themselves (a crashed filler must not stall anyone).
FILL_LOCK_MS = 2000
FILL_WAIT_SECONDS = 0.5
FILL_POLL_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class Hit:
    payload: bytes
    near: bool = False  # served from this process's near cache, without a round trip


@dataclass(frozen=True, slots=True)
class Miss:
    """A miss; ``ticket`` is None when the cache is unavailable (then nothing is stored)."""

    ticket: int | None
    leader: bool
    lock_token: str = ""


class CacheUnavailable(Exception):
    """The shared cache cannot be reached (or the circuit is open)."""


class Store(Protocol):
    """Versioned entries, invalidated through the dependency keys they were built from.

    Every cached entry records the *ticket* (a value of a shared logical clock) read before the
    database was queried, and the names of the dependency keys it was built from (the user, its
    organization and role, the global permission and zone keys, the namespace). An invalidation
    sets each touched dependency key to a fresh clock value. An entry is served only while every
    dependency value is at most its ticket, so:

    * an invalidation committed after a fill's database read always defeats that fill, even if
      the fill is stored later (race-safe fills);
    * a change that touches many users bumps one key (O(1) cache operations);
    * clearing a namespace is one bump of the namespace key; nothing is scanned or flushed.

    With Redis, a read is a single EVALSHA that checks the entry and its dependencies on the
    server. Without Redis, the same rules run in-process.
    """

    backend: str

    def get(self, key: str, *, lock_key: str | None) -> Hit | Miss: ...

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
    ) -> bool: ...

    def bump(self, deps: Sequence[str]) -> None: ...

    def count_entries(self, namespace: str) -> int | None: ...

    def incr_stats(self, namespace: str, deltas: dict[str, int]) -> None: ...

    def read_stats(self, namespace: str) -> dict[str, int]: ...

    def stats_since(self) -> float: ...

    def server_info(self) -> dict[str, Any] | None: ...
