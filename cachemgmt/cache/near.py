"""The near cache: process-local copies of entries read from Redis, invalidated by Redis's own pushes.

With Redis, each process keeps copies of entries it has read and serves them without a round
trip, kept coherent by Redis itself (client-side caching in broadcast mode: Redis pushes the
name of every dependency key that changes, is evicted or is flushed). These rules keep it from
ever serving what Redis would refuse.

Pushes. One dedicated RESP3 connection per process runs ``CLIENT TRACKING ON BCAST`` on the
dependency-key prefixes: whenever any such key is written (an invalidation's bump), evicted,
expired or flushed, Redis pushes its name (or "everything" for a flush). Before every lookup
the pending pushes are read without blocking and the copies built from a named key are
dropped. An invalidation returns only after a PING sent once its script was answered has been
answered too (``RedisStore.bump``), and Redis (7, one I/O thread) answers that PING only after
it has written the pushes to every tracking connection, so a request that starts after a write
returned finds the push already in its socket.

Leases. A copy is served only while a *lease* holds. A lease is granted by Redis answering a
small write on the tracking connection (``SET <prefix>:near:lease 1 NX PX 1000``): a write, so
that whatever stops Redis from taking the invalidations' writes (a hang, a write pause during
a failover, a read-only replica, out of memory) also stops the leases. It runs for half the
Redis socket timeout from when the write was *sent*. A writer whose invalidation is not taken
returns only once every lease the server granted before has run out: a server that does not
answer costs the writer a whole timeout; one that refuses at once (a demoted primary's
``READONLY``, out of memory) grants no lease from then on either, and the writer waits one
lease after the refusal (``RedisStore.bump``). Readers are then back on the Redis path (and on
the database while their circuit is open). A failure on the writer's side alone (no free
connection in its pool, no primary known to Sentinel) is a lost invalidation like any other:
recorded, and every namespace is cleared at that process's next successful call. Pushes
and lease answers share the one ordered connection, so a push lost in the network (a TCP
retransmission) holds back the lease answers too: a copy outlives its invalidation by at most
a lease. An answer still missing when the process looked a lease after sending the write drops
every copy when it comes; an error answer or a broken connection drops every copy and turns
the near cache off until it has reconnected.

Seq. Copies are stored only if no push, reconnection or drop happened between the read and the
store (``seq``).

Lifetimes. A copy lives at most ``ttl`` seconds (300 by default; a random 75 to 100 % of it, so
copies read together, as after a start or a clear, are not all read again from Redis in the same
second) and never longer than its entry had left in Redis when it was read. Coherence rests on
the pushes and the leases above; ``ttl`` is a backstop against a defect in them, and each expiry
costs a Redis round trip per copy (at 60 s, 200 users in 4 workers read 800 copies again every
minute, which cost ours-redis up to a fifth of its throughput in the phases they fell in); at
most ``max_entries`` copies are kept, the oldest dropped first.

The background thread. A thread per process connects (the request path never does), reads the
socket once a second so an idle process's pushes do not pile up in Redis, and closes the
connection after ``idle_close`` seconds without a lookup (a process that stopped serving gives
its connection back). A forked child forgets its parent's connection and copies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from redis.exceptions import NoPermissionError, RedisError, ResponseError

logger = logging.getLogger("cachemgmt.cache")


def lease_seconds(socket_timeout: float) -> float:
    """How long a lease lasts: half the Redis socket timeout (this module's docstring)."""
    return socket_timeout / 2


class NearCache:
    """Process-local copies of entries read from Redis, under the rules of this module's docstring."""

    _LEASE_PX = 1000

    def __init__(
        self,
        pool_factory: Callable[[], Any],
        *,
        prefixes: Sequence[str],
        lease_key: str,
        socket_timeout: float,
        max_entries: int,
        ttl: float = 300.0,
        retry_after: float = 1.0,
        idle_close: float = 600.0,
        maintain_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool_factory = pool_factory
        self._prefixes = tuple(prefixes)
        self._lease_key = lease_key
        self._socket_timeout = socket_timeout
        self.lease = lease_seconds(socket_timeout)
        # Two renewals a lease: an answer has half a lease to arrive before the lease runs out.
        # Each renewal wakes Redis and costs the worker a send and a read; four a lease cost
        # ours-redis 2-4 % of its throughput against bare, side by side (bench/README.md).
        self._renew_every = self.lease / 2
        self._max_entries = max_entries
        self._ttl = ttl
        self._retry_after = retry_after
        self._idle_close = idle_close
        self._maintain_every = maintain_every  # 0: no thread; lookups connect (tests)
        self._clock = clock
        self._lock = threading.Lock()
        self._pool: Any = None
        self._conn: Any = None
        self._poller: Any = None
        self._entries: dict[str, tuple[bytes, tuple[str, ...], float]] = {}
        self._by_dep: dict[str, set[str]] = {}
        self._renewals: deque[float] = deque()  # when each unanswered lease write was sent
        self._last_renewal = float("-inf")
        self._last_drain = float("-inf")
        self._last_lookup = float("-inf")
        self._valid_until = 0.0
        self._next_connect = 0.0
        self._failures = 0
        self._closed = False
        self._wake = threading.Event()
        self._thread_pid = 0
        # Set when Redis refuses tracking itself (an ACL without CLIENT, an unknown command):
        # retrying cannot help, so the near cache stays off for this process.
        self.refused = False
        # Changed by every processed push, drop, connect and disconnect; a read's copy is
        # stored only if it is unchanged since the lookup that preceded the read.
        self.seq = 0

    # -- connection --------------------------------------------------------------------

    def _open(self) -> Any:
        """A new tracking connection (network round trips: never under the lock)."""
        if self._pool is None:
            self._pool = self._pool_factory()  # RESP3, this process's socket timeout
        conn: Any = self._pool.make_connection()
        try:
            conn.connect()
            conn._parser.set_invalidation_push_handler(self._on_push)
            args: list[str] = ["CLIENT", "TRACKING", "ON", "BCAST"]
            for prefix in self._prefixes:
                args += ["PREFIX", prefix]
            conn.send_command(*args)
            if conn.read_response() not in (b"OK", "OK"):
                raise ResponseError("CLIENT TRACKING was not acknowledged")
        except BaseException:
            conn.disconnect()
            raise
        return conn

    def _install(self, conn: Any) -> None:
        """Start using a connection from ``_open``. Lock held."""
        self._conn = conn
        # One poll(2) tells whether anything arrived since the last full drain (the parser
        # keeps no complete reply buffered after one), cheaper than redis-py's can_read.
        self._poller = select.poll()
        self._poller.register(conn._sock.fileno(), select.POLLIN | select.POLLPRI)
        self._renewals.clear()
        self._last_renewal = float("-inf")
        self._valid_until = 0.0
        self.seq += 1
        self._drop_all()

    def _connect_due(self, now: float) -> bool:
        return not (self._closed or self.refused or self._conn is not None or now < self._next_connect)

    def _try_connect(self, now: float, *, locked: bool) -> None:
        """Connect, with backoff; failures logged once. With ``locked`` the caller holds the
        lock throughout (tests without the thread); else it is taken only to install."""
        error: BaseException | None = None
        conn: Any = None
        try:
            conn = self._open()
        except (RedisError, OSError) as exc:
            error = exc
        with contextlib.nullcontext() if locked else self._lock:
            if error is None:
                if self._conn is None and not self._closed:
                    self._install(conn)
                    return
                conn.disconnect()
                return
            message = str(error).lower()
            if isinstance(error, NoPermissionError) or (
                isinstance(error, ResponseError) and ("unknown command" in message or "unknown subcommand" in message)
            ):
                self.refused = True
                logger.warning("near cache off: Redis refused client tracking", extra={"error": str(error)[:200]})
                return
            self._failed(now, error, "near cache unavailable: serving from Redis")

    def _failed(self, now: float, exc: BaseException, message: str) -> None:
        if self._failures == 0:
            logger.warning(message, extra={"error": type(exc).__name__})
        self._failures += 1
        backoff = min(60.0, self._retry_after * 2 ** min(self._failures - 1, 6))
        self._next_connect = now + backoff * random.uniform(0.8, 1.0)

    def _disconnect(self) -> None:
        """Drop the connection, the lease and every copy. Lock held."""
        conn, self._conn = self._conn, None
        self._poller = None
        self.seq += 1
        self._drop_all()
        self._renewals.clear()
        self._valid_until = 0.0
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()

    def _broken(self, now: float, exc: BaseException) -> None:
        self._disconnect()
        self._failed(now, exc, "near cache disconnected: serving from Redis")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._disconnect()
        self._wake.set()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's socket is not ours (never read or shut it down)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._conn = None
        self._poller = None
        self._pool = None
        self.seq += 1
        self._drop_all()
        self._renewals.clear()
        self._valid_until = 0.0
        self._next_connect = 0.0
        self._thread_pid = 0

    # -- the background thread ---------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._maintain_every <= 0 or self._thread_pid == os.getpid():
            return
        self._thread_pid = os.getpid()
        threading.Thread(target=self._maintain_loop, name="near-cache", daemon=True).start()

    def _maintain_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._maintain_every)
            self._wake.clear()
            self.maintain()

    def maintain(self) -> None:
        """Connect when wanted, read what arrived, close after a long idle time."""
        with self._lock:
            now = self._clock()
            connect = self._conn is None and now - self._last_lookup < self._idle_close and self._connect_due(now)
        if connect:
            self._try_connect(now, locked=False)
            return
        with self._lock:
            if self._closed or self._conn is None:
                return
            if now - self._last_lookup >= self._idle_close:
                self._disconnect()
                return
            self._drain(now, renew=False)

    # -- pushes and lease answers --------------------------------------------------------

    def _on_push(self, message: Any) -> object:
        # [b"invalidate", [key, ...]] or [b"invalidate", None] after a flush.
        self.seq += 1
        keys = message[1] if len(message) > 1 else None
        if keys is None:
            self._drop_all()
        else:
            for key in keys:
                self._drop_dep(key.decode() if isinstance(key, bytes) else str(key))
        return _PUSH

    def _drain(self, now: float, *, renew: bool = True) -> bool:
        """Read every pending push and lease answer; True while the lease holds. Lock held."""
        conn = self._conn
        if conn is None:
            return False
        looked_before, self._last_drain = self._last_drain, now
        try:
            if self._poller.poll(0):  # then read every complete reply, buffered ones included
                while conn.can_read(0):
                    reply = conn.read_response(push_request=True)
                    if reply is _PUSH or not self._renewals:
                        continue
                    sent = self._renewals.popleft()  # OK, or nil when the key was there (NX)
                    if looked_before - sent > self.lease:
                        # It was not there when this process last looked, a lease after the
                        # write: Redis stopped answering for a while, and a writer may have
                        # given up on it meanwhile.
                        self.seq += 1
                        self._drop_all()
                    self._valid_until = sent + self.lease
                    self._failures = 0
            if self._renewals and now - self._renewals[0] > 4 * self._socket_timeout:
                raise TimeoutError("no answer to the lease write")
            if renew and len(self._renewals) < 2 and now - self._last_renewal >= self._renew_every:
                conn.send_command("SET", self._lease_key, "1", "NX", "PX", self._LEASE_PX)
                self._renewals.append(now)
                self._last_renewal = now
        except (RedisError, OSError) as exc:  # an error answer (read-only, OOM, ...) included
            self._broken(now, exc)
            return False
        return now < self._valid_until

    # -- entries -----------------------------------------------------------------------

    def lookup(self, key: str) -> tuple[bytes | None, int | None]:
        """(payload or None, seq to pass to ``store``; None when copies cannot be used)."""
        with self._lock:
            now = self._clock()
            self._last_lookup = now
            if self._conn is None:
                if self._maintain_every > 0:
                    self._ensure_thread()
                    self._wake.set()  # the thread connects; this request goes to Redis
                    return None, None
                if self._connect_due(now):
                    self._try_connect(now, locked=True)
            if not self._drain(now):
                return None, None
            entry = self._entries.get(key)
            if entry is not None and entry[2] > now:
                return entry[0], self.seq
            return None, self.seq

    def store(self, key: str, payload: bytes, deps: Sequence[str], seq: int, *, ttl: float | None = None) -> None:
        """Keep a copy read after ``lookup`` returned ``seq``, for at most ``ttl`` seconds."""
        with self._lock:
            if self._conn is None or seq != self.seq:
                return
            if key in self._entries:
                self._unindex(key)
            elif len(self._entries) >= self._max_entries:
                self._unindex(next(iter(self._entries)))
            deps = tuple(deps)
            life = self._ttl * random.uniform(_TTL_SPREAD, 1.0)
            if ttl is not None:
                life = min(life, ttl)
            self._entries[key] = (payload, deps, self._clock() + life)
            for dep in deps:
                self._by_dep.setdefault(dep, set()).add(key)

    def drop_deps(self, deps: Iterable[str]) -> None:
        """This process's own invalidation: dropped now, before Redis's push arrives."""
        with self._lock:
            self.seq += 1
            for dep in deps:
                self._drop_dep(dep)

    def drop_all(self) -> None:
        with self._lock:
            self.seq += 1
            self._drop_all()

    def __len__(self) -> int:
        return len(self._entries)

    # -- read-only views (tests, benchmarks) ---------------------------------------------

    @property
    def connection(self) -> Any:
        """The tracking connection; None while there is none."""
        return self._conn

    @property
    def deps_index(self) -> Mapping[str, set[str]]:
        """Each dependency key a copy was built from, with the keys of those copies."""
        return MappingProxyType(self._by_dep)

    @property
    def thread_pid(self) -> int:
        """The process that started the background thread (0: none in this process)."""
        return self._thread_pid

    def _unindex(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for dep in entry[1]:
            keys = self._by_dep.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_dep[dep]

    def _drop_dep(self, dep: str) -> None:
        for key in self._by_dep.pop(dep, ()):
            self._unindex(key)

    def _drop_all(self) -> None:
        self._entries.clear()
        self._by_dep.clear()


# The shortest share of ``ttl`` a copy is given (module docstring, Lifetimes).
_TTL_SPREAD = 0.75

_PUSH = object()  # what the push handler hands back to the reader: not a reply

_near_caches: list[NearCache] = []  # the ones a forked child must make forget their parent's socket


def near_caches_add(near: NearCache) -> None:
    _near_caches.append(near)


def near_caches_remove(near: NearCache) -> None:
    with contextlib.suppress(ValueError):
        _near_caches.remove(near)


def _forget_near_caches_after_fork() -> None:
    for near in _near_caches:
        near.forget_after_fork()


os.register_at_fork(after_in_child=_forget_near_caches_after_fork)
