"""Redis Sentinel failover without a stale context: fence the old primary, clear what the new one may lack.

Replication is asynchronous, so the primary a failover promotes may lack invalidations the old
one acknowledged (written in the last instants, or after the promotion by a process that had
not heard of it yet: Sentinel leaves the old primary accepting writes until it reconfigures
it, about ten seconds later). An entry such an invalidation should have defeated would be
served again. So every process, before it uses a primary it was not using before:

1. **fences the old primary**: ``REPLICAOF <new primary>`` there, what Sentinel itself does
   some seconds later (``CLIENT PAUSE`` where that command is not allowed; best effort: a dead
   primary needs no fence). From then on it refuses every cache script and every near-cache
   lease, so each process still talking to it gets an error and asks Sentinel again;
2. **waits one Redis socket timeout**, by which every near-cache lease granted by the old
   primary has run out (a lease lasts half a timeout: ``cachemgmt.cache.near``);
3. **clears every namespace on the new primary unless its replication history is known**: the
   new primary's ``master_replid`` is compared with the one recorded beside the clock when it
   was last cleared; a promotion changes it, so the first process to reach it
   bumps the clock and every namespace key, exactly as ``clear_cache --namespace all`` does,
   and records the new id; the others find it recorded and go on.

Nothing is served from the new primary before that has happened in this process. The cache
scripts also carry a ``#!lua`` shebang without ``no-writes``, so a demoted primary (now a
read-only replica) refuses even a read, and its clients move on instead of serving its data.
A thread per process listens for Sentinel's ``+switch-master`` so all of this starts as soon
as Sentinel announces the promotion, not at a process's next error.

An invalidation a demoted primary refuses (the process had not heard of the switch yet) is
sent again: ``RedisStore.bump`` has this process adopt the primary Sentinel names now
(``primary_settled``: steps 1-3, or waiting up to four socket timeouts for the thread already
doing them) and sends it there once more; only if that fails too is it lost (recorded as
such). Dropped at once, an entry filled on the new primary after its clear, from a database
read made before the write committed, would have stayed in service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool, SentinelConnectionPoolProxy

from cachemgmt.cache.keys import NAMESPACES, clock_key, namespace_key, replication_marker_key

logger = logging.getLogger("cachemgmt.cache")

# Where the old primary cannot be made a replica: how long it stays paused instead (clients
# time out and ask Sentinel again; Sentinel's own reconfiguration waits for the pause to end).
FENCE_MS = 5_000

# KEYS: marker, clock, namespace keys...  ARGV: the primary's replication id.
# Like every invalidation (``redis_store``) it moves the clock and the namespace keys to a new
# value, but far past it: the old primary may have handed out tickets above this one's clock
# (bumps it never replicated), and an entry filled with such a ticket must fail its check.
_EPOCH_LUA = """#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
local v = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if v < now then v = now end
local s = string.format('%.0f', v + EPOCH_JUMP)
redis.call('SET', KEYS[2], s)
for i = 3, #KEYS do redis.call('SET', KEYS[i], s) end
redis.call('SET', KEYS[1], ARGV[1])
return 1
""".replace("EPOCH_JUMP", "1000000000")

# One-off clients fail fast: a request may be waiting on them (redis-py retries ten times with
# backoff by default, seconds on a dead server).
NO_RETRY = Retry(NoBackoff(), 0)


def _direct(kwargs: dict[str, Any], address: tuple[str, int]) -> redis.Redis:
    """A one-off client to one server, with the pool's credentials and timeouts."""
    return redis.Redis(
        host=address[0],
        port=address[1],
        db=kwargs.get("db", 0),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        socket_timeout=kwargs.get("socket_timeout"),
        socket_connect_timeout=kwargs.get("socket_connect_timeout"),
        retry=NO_RETRY,
    )


def primary_fence(
    kwargs: dict[str, Any], address: tuple[str, int], current: tuple[str, int], current_replid: str
) -> bool:
    """Make a node that still claims to be primary a replica of ``current`` (or pause its
    clients). True when it is fenced, dead or already a replica; False when it claims to be
    primary and could not be fenced. Raises ConnectionError when the node was promoted *from*
    ``current`` (a Sentinel answering with an out-of-date primary): nothing is fenced then."""
    if address == current:
        return True
    client = _direct(kwargs, address)
    try:
        replication = client.info("replication")
        if replication.get("role") != "master":
            return True
        if replication.get("master_replid2") == current_replid:
            raise redis.ConnectionError(f"{current[0]}:{current[1]} is older than {address[0]}:{address[1]}")
        try:
            client.execute_command("REPLICAOF", current[0], current[1])
        except redis.ResponseError:  # renamed or forbidden by an ACL
            client.execute_command("CLIENT", "PAUSE", FENCE_MS, "ALL")
        return True
    except redis.ConnectionError as exc:
        if "is older than" in str(exc):
            raise
        return True  # unreachable: it serves no one either
    except (redis.RedisError, OSError):
        logger.warning("a former redis primary could not be fenced", extra={"node": f"{address[0]}:{address[1]}"})
        return False
    finally:
        client.close()


def primary_adopt(
    kwargs: dict[str, Any], current: tuple[str, int], others: list[tuple[str, int]], *, wait: float
) -> tuple[bool, bool]:
    """Steps 1-3 of this module's docstring for ``current``; ``others`` are the nodes that may
    still act as primary (the previous one, the service's other nodes). Returns (every one of
    them fenced, the cache cleared). Raises when ``current`` is not a primary (yet)."""
    client = _direct(kwargs, current)
    try:
        replication = client.info("replication")
        if replication.get("role") != "master":
            raise redis.ConnectionError(f"{current[0]}:{current[1]} is not a primary yet")
        replid = replication["master_replid"]
        marker = client.get(replication_marker_key())
        known = marker.decode() if isinstance(marker, bytes) else marker
        fenced = True
        if others and known != replid:
            fenced = all([primary_fence(kwargs, node, current, replid) for node in dict.fromkeys(others)])
            time.sleep(wait)  # near-cache leases granted by a former primary run out
        keys = [replication_marker_key(), clock_key(), *(namespace_key(ns) for ns in NAMESPACES)]
        return fenced, bool(client.eval(_EPOCH_LUA, len(keys), *keys, replid))
    finally:
        client.close()


class AdoptionUnderWay(redis.ConnectionError):
    """Another thread of this process is adopting a new primary: nothing connects meanwhile."""


class _FencingProxy(SentinelConnectionPoolProxy):
    """Sentinel's view of the primary, with the failover steps of this module's docstring
    run once per change of primary, before any connection to the new one is used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._change_lock = threading.Lock()
        self._pid = os.getpid()

    def get_master_address(self) -> Any:
        address = self.sentinel_manager.discover_master(self.service_name)
        if self.is_master and self.master_address != address:
            if self._pid != os.getpid():  # a forked child: its parent's lock state means nothing
                self._change_lock = threading.Lock()
                self._pid = os.getpid()
            # One thread adopts; the others fall back to the database meanwhile (never wait).
            if not self._change_lock.acquire(blocking=False):
                raise AdoptionUnderWay("the redis primary is being adopted")
            try:
                if self.master_address != address:
                    self._adopt(self.master_address, address)
            finally:
                self._change_lock.release()
        return address

    def wait_adopted(self, timeout: float) -> bool:
        """Wait until no thread of this process is adopting a new primary; False on timeout."""
        if self._pid != os.getpid():
            return True  # a forked child: the next get_master_address starts afresh
        if not self._change_lock.acquire(timeout=timeout):
            return False
        self._change_lock.release()
        return True

    def _adopt(self, previous: tuple[str, int] | None, current: tuple[str, int]) -> None:
        pool = self.connection_pool_ref()
        kwargs = dict(pool.connection_kwargs) if pool is not None else {}
        # Every node that may still take writes as a primary: the one this process used, and the
        # service's other nodes (a process that never used one knows no previous primary).
        others = [previous] if previous is not None else []
        with contextlib.suppress(redis.RedisError, OSError):  # else the previous primary alone
            listed = self.sentinel_manager.discover_slaves(self.service_name)
            others += [(str(host), int(port)) for host, port in listed]
        others = [node for node in others if node != current]
        wait = float(kwargs.get("socket_timeout") or 0.25)
        fenced, cleared = primary_adopt(kwargs, current, others, wait=wait)  # raises: nothing connects
        self.master_address = current
        if pool is not None:
            pool.disconnect(inuse_connections=False)
        if previous is not None or cleared:
            logger.warning(
                "redis primary changed",
                extra={
                    "previous": f"{previous[0]}:{previous[1]}" if previous else None,
                    "primary": f"{current[0]}:{current[1]}",
                    "former_primaries_fenced": fenced,
                    "cache_cleared": cleared,
                },
            )


class FencedSentinelConnectionPool(SentinelConnectionPool):
    """django-redis's Sentinel pool (``CONNECTION_POOL_CLASS``) with fenced failovers."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.proxy = _FencingProxy(
            connection_pool=self,
            is_master=self.is_master,
            check_connection=self.check_connection,
            service_name=service_name,
            sentinel_manager=sentinel_manager,
        )
        self.connection_kwargs["connection_pool"] = self.proxy


def primary_settled(pool: Any, timeout: float) -> bool:
    """For a pool that fences failovers: adopt the primary Sentinel names now (fenced, waited,
    cleared, idle connections to the former one closed), waiting up to ``timeout`` for an
    adoption another thread has under way. True when that is done: a command the former primary
    refused can be sent again. False for other pools and when Sentinel cannot say."""
    proxy = getattr(pool, "proxy", None)
    if not isinstance(proxy, _FencingProxy):
        return False
    deadline = time.monotonic() + timeout
    while proxy.wait_adopted(max(0.0, deadline - time.monotonic())):
        try:
            pool.get_master_address()
            return True
        except AdoptionUnderWay:
            continue  # another thread started one in between: wait for it
        except (redis.RedisError, OSError):
            return False
    return False


# Listeners to restart in a forked child (a Celery prefork child inherits the parent's store,
# not its threads).
_listeners: weakref.WeakSet[SwitchListener] = weakref.WeakSet()


class SwitchListener:
    """A thread following Sentinel's ``+switch-master`` for one service: on a switch, the pool
    adopts the new primary at once (fence, wait, clear) instead of at its next error."""

    def __init__(self, pool: Any, sentinels: list[tuple[str, int]], service: str, timeout: float) -> None:
        self._pool = pool
        self._sentinels = sentinels
        self._service = service
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-switch-listener", daemon=True)
        self._thread.start()
        _listeners.add(self)

    def stop(self, *, wait: bool = False) -> None:
        """Stop following Sentinel; with ``wait``, return once the thread has ended."""
        self._stop.set()
        _listeners.discard(self)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            host, port = self._sentinels[index % len(self._sentinels)]
            index += 1
            # Keepalives and a periodic PING: a Sentinel that vanished without closing is noticed.
            client = redis.Redis(
                host=host,
                port=port,
                socket_timeout=None,
                socket_connect_timeout=self._timeout,
                socket_keepalive=True,
                health_check_interval=5,
                retry=NO_RETRY,
            )
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe("+switch-master")
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and str(message.get("data", b""), "utf-8", "replace").split(" ")[0] == self._service:
                        self._switched()
            except (redis.RedisError, OSError):
                self._stop.wait(0.5)  # this Sentinel is down: the next one
            finally:
                client.close()

    def _switched(self) -> None:
        try:
            self._pool.get_master_address()
        except (redis.RedisError, OSError):
            logger.warning("redis primary change announced but not adopted yet", exc_info=True)


def _restart_listeners_in_child() -> None:
    for listener in list(_listeners):
        listener.start()


os.register_at_fork(after_in_child=_restart_listeners_in_child)
