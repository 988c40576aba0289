"""The one owner of the cache: key layout, versioned entries, invalidation, counters, circuit breaker.

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

With Redis, each process also keeps a *near cache*: copies of entries it has read, served
without a round trip, kept coherent by Redis itself (client-side caching in broadcast mode:
Redis pushes the name of every dependency key that changes, is evicted or is flushed). See
``NearCache`` for the rules that keep it from ever serving what Redis would refuse.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import connection, transaction
from redis.exceptions import NoPermissionError, RedisError, ResponseError

logger = logging.getLogger("cachemgmt.cache")

NAMESPACES: tuple[str, ...] = ("user_context", "zones")

# How long a filler holds the single-flight lock, and how long others wait for its result
# before querying the database themselves (a crashed filler must not stall anyone).
FILL_LOCK_MS = 2000
FILL_WAIT_SECONDS = 0.5
FILL_POLL_SECONDS = 0.005


# --------------------------------------------------------------------------------------
# Keys: each has exactly one builder.
# --------------------------------------------------------------------------------------


def _prefix() -> str:
    return str(getattr(settings, "CACHE_KEY_PREFIX", "authctx"))


def clock_key() -> str:
    return f"{_prefix()}:clock"


def namespace_key(namespace: str) -> str:
    return f"{_prefix()}:ns:{namespace}"


def entry_key(namespace: str, ident: int | str) -> str:
    return f"{_prefix()}:e:{namespace}:{ident}"


def fill_lock_key(namespace: str, ident: int | str) -> str:
    return f"{_prefix()}:lock:{namespace}:{ident}"


def dep_user_key(user_id: int) -> str:
    return f"{_prefix()}:dep:u:{int(user_id)}"


def dep_organization_key(organization_id: int) -> str:
    return f"{_prefix()}:dep:o:{int(organization_id)}"


def dep_role_key(role_id: int) -> str:
    return f"{_prefix()}:dep:r:{int(role_id)}"


def dep_permissions_key() -> str:
    """Groups, group permissions and the permission table itself: rare, wide changes."""
    return f"{_prefix()}:dep:perms"


def dep_zones_key() -> str:
    """The zones snapshot as a whole (zone names, sync outcomes)."""
    return f"{_prefix()}:dep:zones"


def near_lease_key() -> str:
    """Written (NX, 1 s) by every process's near cache to renew its lease; never tracked."""
    return f"{_prefix()}:near:lease"


def tracked_prefixes() -> tuple[str, str]:
    """Every key an entry can depend on starts with one of these (the near cache tracks them)."""
    return (f"{_prefix()}:dep:", f"{_prefix()}:ns:")


def stats_key(namespace: str) -> str:
    return f"{_prefix()}:stats:{namespace}"


def stats_since_key() -> str:
    return f"{_prefix()}:stats:since"


def throttle_key(scope: str, digest: str) -> str:
    return f"throttle:{scope}:{digest}"


def task_lock_key(name: str) -> str:
    return f"tasklock:{name}"


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Circuit breaker
# --------------------------------------------------------------------------------------


@dataclass
class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures; one probe after ``cooldown``."""

    threshold: int = 2
    cooldown: float = 5.0
    clock: Callable[[], float] = time.monotonic
    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        with self._lock:
            if self.state == "closed":
                return True
            if self.state == "open" and self.clock() - self.opened_at >= self.cooldown:
                self._set("half_open")
                return True
            return False

    def record_success(self) -> bool:
        """Returns True when this success closed a circuit that was not closed."""
        with self._lock:
            self.failures = 0
            if self.state != "closed":
                self._set("closed")
                return True
            return False

    def record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if self.state == "half_open" or (self.state == "closed" and self.failures >= self.threshold):
                self.opened_at = self.clock()
                self._set("open", exc)

    def _set(self, state: str, exc: BaseException | None = None) -> None:
        previous, self.state = self.state, state
        if state == "open":
            logger.warning(
                "cache circuit opened: serving from the database",
                extra={"previous": previous, "error": type(exc).__name__ if exc else None},
            )
        elif state == "closed":
            logger.warning("cache circuit closed: cache back in use", extra={"previous": previous})


# --------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------


class Store(Protocol):
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


_CLOCK_LUA = """
local function clock_now(clock_key)
  local c = redis.call('GET', clock_key)
  if not c then
    local t = redis.call('TIME')
    redis.call('SET', clock_key, string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2])), 'NX')
    c = redis.call('GET', clock_key)
  end
  return c
end
local function split(s)
  local out = {}
  for k in string.gmatch(s, '%S+') do out[#out + 1] = k end
  return out
end
"""

# KEYS: entry, clock, fill lock.  ARGV: lock token, lock ms, want lock ("1"/"0").
_GET_LUA = (
    _CLOCK_LUA
    + """
local h = redis.call('HMGET', KEYS[1], 't', 'd', 'p')
if h[1] then
  local t = tonumber(h[1])
  local ok = true
  local deps = split(h[2])
  if #deps > 0 then
    local vals = redis.call('MGET', unpack(deps))
    for i = 1, #vals do
      if (not vals[i]) or tonumber(vals[i]) > t then ok = false break end
    end
  end
  if ok then return {1, h[3], h[2], redis.call('PTTL', KEYS[1])} end
end
local c = clock_now(KEYS[2])
local got = 0
if ARGV[3] == '1' and redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then got = 1 end
return {0, c, got}
"""
)

# KEYS: entry, fill lock.  ARGV: ticket, deps, payload, ttl, lock token.
_PUT_LUA = (
    _CLOCK_LUA
    + """
local t = tonumber(ARGV[1])
local deps = split(ARGV[2])
local fresh = true
local vals = {}
if #deps > 0 then
  vals = redis.call('MGET', unpack(deps))
  for i = 1, #vals do
    if vals[i] and tonumber(vals[i]) > t then fresh = false break end
  end
end
local stored = 0
if fresh then
  for i = 1, #deps do
    if not vals[i] then redis.call('SET', deps[i], ARGV[1]) end
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 't', ARGV[1], 'd', ARGV[2], 'p', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  stored = 1
end
if ARGV[5] ~= '' and redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return stored
"""
)

# KEYS: clock, deps...
_BUMP_LUA = """
local v = redis.call('INCR', KEYS[1])
if v < 1000000000 then
  -- The clock was lost (eviction, restart with old entries restored): reseed it from server
  -- time, which is past every earlier ticket.
  local t = redis.call('TIME')
  v = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local s = string.format('%.0f', v)
redis.call('SET', KEYS[1], s)
for i = 2, #KEYS do redis.call('SET', KEYS[i], s) end
return s
"""


class NearCache:
    """Process-local copies of entries read from Redis, invalidated by Redis's own pushes.

    One dedicated RESP3 connection per process runs ``CLIENT TRACKING ON BCAST`` on the
    dependency-key prefixes: whenever any such key is written (an invalidation's bump),
    evicted, expired or flushed, Redis pushes its name (or "everything" for a flush). Before
    every lookup the pending pushes are read without blocking and the copies built from a
    named key are dropped. An invalidation returns only after a PING sent once its script
    was answered has been answered too (``RedisStore.bump``), and Redis (7, one I/O thread)
    answers that PING only after it has written the pushes to every tracking connection, so
    a request that starts after a write returned finds the push already in its socket.

    A copy is served only while a *lease* holds. A lease is granted by Redis answering a
    small write on the tracking connection (``SET <prefix>:near:lease 1 NX PX 1000``): a
    write, so that whatever stops Redis from taking the invalidations' writes (a hang, a
    write pause during a failover, a read-only replica, out of memory) also stops the
    leases. It runs for half the Redis socket timeout from when the write was *sent*; a
    writer needs a whole timeout to find out that its invalidation was not taken, so by
    then every lease granted before has run out and readers are back on the Redis path (and
    on the database while their circuit is open). Pushes and lease answers share the one
    ordered connection, so a push lost in the network (a TCP retransmission) holds back the
    lease answers too: a copy outlives its invalidation by at most a lease. An answer still
    missing when the process looked a lease after sending the write drops every copy when it
    comes; an error answer or a broken connection drops every copy and turns the near cache
    off until it has reconnected.

    Copies are stored only if no push, reconnection or drop happened between the read and
    the store (``seq``). A background thread per process connects (the request path never
    does), reads the socket once a second so an idle process's pushes do not pile up in
    Redis, and closes the connection after ``idle_close`` seconds without a lookup (a
    process that stopped serving gives its connection back).
    """

    _LEASE_PX = 1000

    def __init__(
        self,
        url: str,
        *,
        prefixes: Sequence[str],
        lease_key: str,
        socket_timeout: float,
        max_entries: int,
        ttl: float = 60.0,
        retry_after: float = 1.0,
        idle_close: float = 600.0,
        maintain_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._prefixes = tuple(prefixes)
        self._lease_key = lease_key
        self._socket_timeout = socket_timeout
        self.lease = socket_timeout / 2
        self._renew_every = self.lease / 4
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
        import redis

        if self._pool is None:
            self._pool = redis.ConnectionPool.from_url(
                self._url,
                protocol=3,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                health_check_interval=0,
            )
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
            life = self._ttl if ttl is None else min(self._ttl, ttl)
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


_PUSH = object()  # what the push handler hands back to the reader: not a reply

_near_caches: list[NearCache] = []


def _forget_near_caches_after_fork() -> None:
    for near in _near_caches:
        near.forget_after_fork()


os.register_at_fork(after_in_child=_forget_near_caches_after_fork)


def _plain_redis_client() -> bool:
    """The near cache follows ``REDIS_URL``; behind Sentinel that is not the primary's address."""
    default: dict[str, Any] = settings.CACHES.get("default", {})
    options: dict[str, Any] = default.get("OPTIONS", {})
    return options.get("CLIENT_CLASS", "django_redis.client.DefaultClient") == "django_redis.client.DefaultClient"


def _redis_socket_timeout() -> float:
    """The data path's socket timeout: a near-cache lease must be shorter than it."""
    default: dict[str, Any] = settings.CACHES.get("default", {})
    options: dict[str, Any] = default.get("OPTIONS", {})
    timeout = options.get("SOCKET_TIMEOUT") or int(getattr(settings, "REDIS_SOCKET_TIMEOUT_MS", 250)) / 1000
    return float(timeout)


class RedisStore:
    """Redis through django-redis's connection pool, guarded by a circuit breaker."""

    backend = "redis"

    def __init__(self, breaker: CircuitBreaker | None = None) -> None:
        from django_redis import get_redis_connection

        self._client = get_redis_connection("default")
        cooldown = int(getattr(settings, "CACHE_BREAKER_COOLDOWN_MS", 5000)) / 1000
        self.breaker = breaker or CircuitBreaker(cooldown=cooldown)
        self._get = self._client.register_script(_GET_LUA)
        self._put = self._client.register_script(_PUT_LUA)
        self._bump = self._client.register_script(_BUMP_LUA)
        # Invalidations this process could not deliver; on recovery every namespace is
        # bumped, because an entry they should have defeated may still be in Redis. The
        # generation keeps a loss recorded during a recovery from being cleared by it.
        self._lost_invalidations = False
        self._lost_generation = 0
        self.near: NearCache | None = None
        max_near = int(getattr(settings, "CACHE_NEAR_MAX_ENTRIES", 0))
        if max_near > 0 and settings.REDIS_URL and _plain_redis_client():
            self.near = NearCache(
                settings.REDIS_URL,
                prefixes=tracked_prefixes(),
                lease_key=near_lease_key(),
                socket_timeout=_redis_socket_timeout(),
                max_entries=max_near,
            )
            _near_caches.append(self.near)

    @property
    def client(self) -> Any:
        return self._client

    def _call(self, fn: Callable[[], Any], *, past_open_circuit: bool = False) -> Any:
        if not self.breaker.allow() and not past_open_circuit:
            raise CacheUnavailable("circuit open")
        if self.breaker.state != "closed":
            # A probe: while this process could not reach Redis, other processes may have
            # lost invalidations too (and may never call again), so it clears as if it had.
            self._lost_invalidations = True
            self._lost_generation += 1
        try:
            if self._lost_invalidations:
                # Before anything is read again: an entry that a lost invalidation should
                # have defeated may still be in Redis, so every namespace is cleared.
                generation = self._lost_generation
                self._bump(keys=[clock_key(), *(namespace_key(ns) for ns in NAMESPACES)])
                if self._lost_generation == generation:
                    self._lost_invalidations = False
                logger.warning("cache reachable again: cleared every namespace after lost invalidations")
            result = fn()
        except (RedisError, OSError) as exc:
            self.breaker.record_failure(exc)
            raise CacheUnavailable(str(exc)) from exc
        self.breaker.record_success()
        return result

    def close(self) -> None:
        if self.near is not None:
            self.near.close()
            with contextlib.suppress(ValueError):
                _near_caches.remove(self.near)

    def get(self, key: str, *, lock_key: str | None) -> Hit | Miss:
        near, seq = self.near, None
        if near is not None and self.breaker.state == "closed" and not self._lost_invalidations:
            payload, seq = near.lookup(key)
            if payload is not None:
                return Hit(payload, near=True)
        token = secrets.token_hex(8) if lock_key else ""
        result = self._call(
            lambda: self._get(
                keys=[key, clock_key(), lock_key or key + ":nolock"],
                args=[token, FILL_LOCK_MS, "1" if lock_key else "0"],
            )
        )
        if int(result[0]) == 1:
            payload = bytes(result[1])
            if seq is not None and near is not None:
                pttl = int(result[3])  # a copy never outlives the entry in Redis
                near.store(key, payload, bytes(result[2]).decode().split(), seq, ttl=pttl / 1000 if pttl > 0 else None)
            return Hit(payload)
        leader = int(result[2]) == 1
        return Miss(ticket=int(result[1]), leader=leader, lock_token=token if leader else "")

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
        result = self._call(
            lambda: self._put(
                keys=[key, lock_key or key + ":nolock"],
                args=[ticket, " ".join(deps), payload, ttl, lock_token],
            )
        )
        return int(result) == 1

    def bump(self, deps: Sequence[str]) -> None:
        try:
            # Invalidations are tried even while this process's circuit is open: other
            # processes may already be reading Redis again, and would serve what this write
            # should have defeated until this process's next probe.
            # The PING after the script is a second, separate round trip on purpose: Redis
            # answers it only after the pass that wrote the script's reply has also written
            # the invalidation pushes to every near cache (those two writes may be apart on
            # a busy host). So when this returns, every tracking process can already read
            # the push, and its very next request drops the copy.
            self._call(
                lambda: (self._bump(keys=[clock_key(), *deps]), self._client.ping()),
                past_open_circuit=True,
            )
        except CacheUnavailable:
            self._lost_invalidations = True
            self._lost_generation += 1
            if self.near is not None:
                self.near.drop_all()
            raise
        if self.near is not None:
            self.near.drop_deps(deps)

    def count_entries(self, namespace: str) -> int | None:
        # Counting would need a scan of the keyspace; the contract allows null here.
        return None

    def incr_stats(self, namespace: str, deltas: dict[str, int]) -> None:
        def run() -> None:
            pipe = self._client.pipeline(transaction=False)
            for name, delta in deltas.items():
                pipe.hincrby(stats_key(namespace), name, delta)
            pipe.set(stats_since_key(), f"{time.time():.3f}", nx=True)
            pipe.execute()

        self._call(run)

    def read_stats(self, namespace: str) -> dict[str, int]:
        raw = self._call(lambda: self._client.hgetall(stats_key(namespace)))
        return {k.decode(): int(v) for k, v in raw.items()}

    def stats_since(self) -> float:
        raw = self._call(lambda: self._client.get(stats_since_key()))
        return float(raw) if raw else time.time()

    def server_info(self) -> dict[str, Any] | None:
        info = self._call(lambda: self._client.info())
        return {"used_memory": info.get("used_memory"), "connected_clients": info.get("connected_clients")}


# --------------------------------------------------------------------------------------
# The process-wide store and the public API used by services and selectors.
# --------------------------------------------------------------------------------------

_store: Store | None = None
_store_lock = threading.Lock()


def get_store() -> Store:
    global _store
    store = _store
    if store is None:
        with _store_lock:
            if _store is None:
                _store = RedisStore() if getattr(settings, "REDIS_URL", None) else LocalStore()
            store = _store
    return store


def reset_store(store: Store | None = None) -> None:
    """Drop the process's store (tests, settings changes); the next call builds a new one."""
    global _store
    with _store_lock:
        previous, _store = _store, store
    if isinstance(previous, RedisStore) and previous is not store:
        previous.close()
    _local_counters.clear()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in {"REDIS_URL", "CACHES", "CACHE_KEY_PREFIX", "CACHE_NEAR_MAX_ENTRIES", "REDIS_SOCKET_TIMEOUT_MS"}:
        reset_store()


setting_changed.connect(_on_setting_changed)


def backend_name() -> str:
    return get_store().backend


def jittered_ttl(ttl: int) -> int:
    """The TTL is only a backstop; jitter spreads expiries so they do not stampede together."""
    return max(1, int(ttl * random.uniform(0.9, 1.0)))


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
    store = get_store()
    for namespace, deltas in pending.items():
        try:
            store.incr_stats(namespace, deltas)
        except CacheUnavailable:
            with _counters_lock:  # keep them for the next flush
                bucket = _local_counters.setdefault(namespace, {})
                for name, delta in deltas.items():
                    bucket[name] = bucket.get(name, 0) + delta


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


def stats_read(namespace: str) -> dict[str, int]:
    stats_flush()
    return get_store().read_stats(namespace)


# --------------------------------------------------------------------------------------
# Small shared counters and locks through Django's cache (throttling, task locks).
# --------------------------------------------------------------------------------------

_fallback_counters: dict[str, tuple[int, float]] = {}
_fallback_lock = threading.Lock()


def _django_cache() -> Any:
    return caches["default"]


def _shared(fn: Callable[[Any], Any]) -> Any:
    """Run ``fn`` on Django's cache behind the same circuit breaker as the context store."""
    store = get_store()
    if isinstance(store, RedisStore):
        return store._call(lambda: fn(_django_cache()))
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
        if backend_name() == "redis":
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
        if backend_name() == "redis":
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


def lock_acquire(name: str, *, ttl: int) -> str | None:
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
