"""The Redis store: entries checked against their dependencies on the server, in Lua scripts."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cachemgmt.cache.breaker import CircuitBreaker
from cachemgmt.cache.failover import SwitchListener, primary_settled
from cachemgmt.cache.keys import (
    NAMESPACES,
    clock_key,
    namespace_key,
    near_lease_key,
    stats_key,
    stats_since_key,
    tracked_prefixes,
)
from cachemgmt.cache.near import NearCache, lease_seconds, near_caches_add, near_caches_remove
from cachemgmt.cache.store import FILL_LOCK_MS, CacheUnavailable, Hit, Miss
from cachemgmt.conf import cachemgmt_settings

logger = logging.getLogger("cachemgmt.cache")

# The shebang (without ``no-writes``) makes a read-only replica refuse every script, reads
# included: a client left on a demoted primary gets an error and moves on (``failover``).
_SHEBANG = "#!lua\n"
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
    _SHEBANG
    + _CLOCK_LUA
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
    _SHEBANG
    + _CLOCK_LUA
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
_BUMP_LUA = """#!lua
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


def _single_primary_client() -> bool:
    """The near cache needs every read on the primary: django-redis's default client (one
    server) does that, behind Sentinel too; its replica-reading clients do not."""
    default: dict[str, Any] = settings.CACHES.get("default", {})
    options: dict[str, Any] = default.get("OPTIONS", {})
    return options.get("CLIENT_CLASS", "django_redis.client.DefaultClient") == "django_redis.client.DefaultClient"


def _timed_out(exc: BaseException | None) -> bool:
    """A failure that took a whole socket timeout (as opposed to a refusal that came back at once)."""
    return isinstance(exc, (RedisTimeoutError, TimeoutError))


def _near_pool(timeout: float, data_pool: Any) -> Any:
    """The near cache's connections: RESP3, to ``REDIS_URL``, or behind Sentinel to the primary the
    data path has adopted (``_AdoptedPrimary``)."""
    import redis

    common = {"protocol": 3, "socket_timeout": timeout, "socket_connect_timeout": timeout, "health_check_interval": 0}
    if getattr(settings, "REDIS_SENTINELS", None):
        return _AdoptedPrimary(
            data_pool,
            db=settings.REDIS_SENTINEL_DB,
            password=getattr(settings, "REDIS_PASSWORD", None),
            **common,
        )
    return redis.ConnectionPool.from_url(str(settings.REDIS_URL), **common)


class _AdoptedPrimary:
    """Behind Sentinel, the near cache's tracking connection goes to the primary the data path has
    adopted (``failover``: fenced, waited, cleared), never to one Sentinel names before that: a
    tracking connection on the new primary while reads still went to the old one would take its
    leases there and keep copies read from a server it does not hear from. Asking the data path's
    pool for the primary runs the adoption first when Sentinel has switched (on the near cache's
    own thread: the request path never connects it)."""

    def __init__(self, data_pool: Any, **kwargs: Any) -> None:
        self._data_pool = data_pool
        self._kwargs = kwargs

    def make_connection(self) -> Any:
        import redis

        host, port = self._data_pool.get_master_address()
        return redis.Connection(host=host, port=port, **self._kwargs)


def _redis_socket_timeout() -> float:
    """The data path's socket timeout: a near-cache lease must be shorter than it."""
    default: dict[str, Any] = settings.CACHES.get("default", {})
    options: dict[str, Any] = default.get("OPTIONS", {})
    timeout = options.get("SOCKET_TIMEOUT") or int(cachemgmt_settings.REDIS_SOCKET_TIMEOUT_MS) / 1000
    return float(timeout)


class RedisStore:
    """Redis through django-redis's connection pool, guarded by a circuit breaker."""

    backend = "redis"

    def __init__(self, breaker: CircuitBreaker | None = None) -> None:
        from django_redis import get_redis_connection

        self._client = get_redis_connection("default")
        cooldown = int(cachemgmt_settings.BREAKER_COOLDOWN_MS) / 1000
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
        self._timeout = _redis_socket_timeout()
        # How long a near-cache lease lasts in this deployment: other processes may keep near
        # caches even where this one keeps none (a worker started with CACHE_NEAR_MAX_ENTRIES=0).
        self._near_lease = lease_seconds(self._timeout) if _single_primary_client() else 0.0
        max_near = int(cachemgmt_settings.NEAR_MAX_ENTRIES)
        if max_near > 0 and _single_primary_client():
            self.near = NearCache(
                lambda: _near_pool(self._timeout, self._client.connection_pool),
                prefixes=tracked_prefixes(),
                lease_key=near_lease_key(),
                socket_timeout=self._timeout,
                max_entries=max_near,
            )
            near_caches_add(self.near)
        self.switch_listener: SwitchListener | None = None
        sentinels = getattr(settings, "REDIS_SENTINELS", None)
        if sentinels:
            self.switch_listener = SwitchListener(
                self._client.connection_pool, sentinels, settings.REDIS_SENTINEL_SERVICE, _redis_socket_timeout()
            )
            self.switch_listener.start()

    @property
    def client(self) -> Any:
        return self._client

    @property
    def lost_invalidations(self) -> bool:
        """True from a lost invalidation until every namespace has been cleared after it."""
        return self._lost_invalidations

    def guarded(self, fn: Callable[[], Any], *, past_open_circuit: bool = False) -> Any:
        """Run ``fn`` (Redis calls) behind the circuit breaker; CacheUnavailable when it fails."""
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
        if self.switch_listener is not None:
            self.switch_listener.stop()
        if self.near is not None:
            self.near.close()
            near_caches_remove(self.near)

    def get(self, key: str, *, lock_key: str | None) -> Hit | Miss:
        near, seq = self.near, None
        if near is not None and self.breaker.state == "closed" and not self._lost_invalidations:
            payload, seq = near.lookup(key)
            if payload is not None:
                return Hit(payload, near=True)
        token = secrets.token_hex(8) if lock_key else ""
        result = self.guarded(
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
        result = self.guarded(
            lambda: self._put(
                keys=[key, lock_key or key + ":nolock"],
                args=[ticket, " ".join(deps), payload, ttl, lock_token],
            )
        )
        return int(result) == 1

    def bump(self, deps: Sequence[str]) -> None:
        keys = [clock_key(), *deps]

        def deliver() -> None:
            # The PING after the script is a second, separate round trip on purpose: Redis
            # answers it only after the pass that wrote the script's reply has also written
            # the invalidation pushes to every near cache (those two writes may be apart on
            # a busy host). So when this returns, every tracking process can already read
            # the push, and its very next request drops the copy.
            self._bump(keys=keys)
            self._client.ping()

        refused_at: float | None = None
        for attempt in (1, 2):
            try:
                # Invalidations are tried even while this process's circuit is open: other
                # processes may already be reading Redis again, and would serve what this
                # write should have defeated until this process's next probe.
                self.guarded(deliver, past_open_circuit=True)
                break
            except CacheUnavailable as exc:
                if not _timed_out(exc.__cause__):
                    refused_at = time.monotonic()
                # Refused because the primary moved (a demoted primary answers READONLY, or
                # another thread is adopting the new one): sent once more, to the new primary
                # once it is fenced and cleared, rather than lost.
                pool = self._client.connection_pool
                if attempt == 1 and refused_at is not None and primary_settled(pool, 4 * self._timeout):
                    continue
                self._lost_invalidations = True
                self._lost_generation += 1
                if self.near is not None:
                    self.near.drop_all()
                if refused_at is not None and self._near_lease:
                    # A refusal comes back at once, while other processes' near caches may
                    # still hold a lease the refusing server granted before it stopped taking
                    # writes. It grants none after (a lease is a write), so one lease from
                    # now they have all run out (a timeout takes longer than a lease itself).
                    time.sleep(max(0.0, refused_at + self._near_lease - time.monotonic()))
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

        self.guarded(run)

    def read_stats(self, namespace: str) -> dict[str, int]:
        raw = self.guarded(lambda: self._client.hgetall(stats_key(namespace)))
        return {k.decode(): int(v) for k, v in raw.items()}

    def stats_since(self) -> float:
        raw = self.guarded(lambda: self._client.get(stats_since_key()))
        return float(raw) if raw else time.time()

    def server_info(self) -> dict[str, Any] | None:
        info = self.guarded(lambda: self._client.info())
        return {"used_memory": info.get("used_memory"), "connected_clients": info.get("connected_clients")}
