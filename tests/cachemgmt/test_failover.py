"""The failover protocol on real Redis servers: fence, wait, clear, and never demote the newer primary.

Sentinel's answers come from a stand-in here (what it says is the input under test); the whole
protocol with real Sentinels runs in tests/faults/test_sentinel.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cachemgmt import cache
from cachemgmt.cache.failover import FencedSentinelConnectionPool, primary_adopt
from tests.support.processes import RedisServer, use_redis_server

pytestmark = pytest.mark.slow

KWARGS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


@pytest.fixture
def two_servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    a, b = RedisServer.started(prefix="failover-a-"), RedisServer.started(prefix="failover-b-")
    yield a, b
    a.remove()
    b.remove()


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=2)


def promote_from(old: RedisServer, new: RedisServer) -> None:
    """``new`` replicates ``old``, then is promoted (its ``master_replid2`` is ``old``'s id)."""
    client(new).replicaof("127.0.0.1", old.port)
    deadline = time.monotonic() + 10
    while client(new).info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "replica never synced"
        time.sleep(0.02)
    client(new).replicaof("NO", "ONE")


class StandInSentinel:
    def __init__(self, master: RedisServer, replicas: list[RedisServer]) -> None:
        self.master, self.replicas = master, replicas

    def discover_master(self, service: str) -> tuple[str, int]:
        return ("127.0.0.1", self.master.port)

    def discover_slaves(self, service: str) -> list[tuple[str, int]]:
        return [("127.0.0.1", server.port) for server in self.replicas]


def test_a_ticket_taken_on_the_old_primary_cannot_fill_the_new_one(two_servers, settings):
    """The old primary's clock ran ahead of the new one's (bumps it never replicated): a fill
    with its ticket must still fail its check after the new primary is adopted."""
    old, new = two_servers
    use_redis_server(settings, old, timeout=0.25, max_connections=10)
    cache.reset_store()
    cache.deps_bump([cache.dep_user_key(1)])
    promote_from(old, new)  # the new primary has everything up to here
    for _ in range(5):  # ... and not these
        cache.deps_bump([cache.dep_user_key(2)])
    miss = cache.entry_get("user_context", "1.v2")
    assert isinstance(miss, cache.Miss) and miss.ticket is not None

    fenced, cleared = primary_adopt(KWARGS, ("127.0.0.1", new.port), [("127.0.0.1", old.port)], wait=0.0)
    assert fenced and cleared
    assert client(old).info("replication")["role"] == "slave"  # fenced: a replica of the new one

    use_redis_server(settings, new, timeout=0.25, max_connections=10)
    cache.reset_store()
    stored = cache.entry_put("user_context", "1.v2", miss=miss, deps=[cache.dep_user_key(1)], payload=b"stale", ttl=60)
    assert stored is False
    assert not isinstance(cache.entry_get("user_context", "1.v2"), cache.Hit)
    cache.reset_store()


def test_an_out_of_date_answer_never_demotes_the_newer_primary(two_servers):
    old, new = two_servers
    promote_from(old, new)  # both claim to be primary now, ``new`` promoted from ``old``
    with pytest.raises(redis.ConnectionError, match="older than"):
        primary_adopt(KWARGS, ("127.0.0.1", old.port), [("127.0.0.1", new.port)], wait=0.0)
    assert client(new).info("replication")["role"] == "master"


def test_a_process_that_never_used_a_primary_still_fences_the_old_one(two_servers, settings):
    """A new process (or a forked child) knows no previous primary: the service's other nodes,
    as Sentinel lists them, are fenced before the new primary is cleared and used."""
    old, new = two_servers
    promote_from(old, new)
    pool: Any = FencedSentinelConnectionPool("svc", StandInSentinel(master=new, replicas=[old]), **KWARGS)
    assert pool.get_master_address() == ("127.0.0.1", new.port)
    assert client(old).info("replication")["role"] == "slave"
    assert client(new).get(cache.clock_key()) is not None  # cleared: the clock moved
    # Known from then on: another adoption neither fences nor clears again.
    clock = client(new).get(cache.clock_key())
    again: Any = FencedSentinelConnectionPool("svc", StandInSentinel(master=new, replicas=[old]), **KWARGS)
    again.get_master_address()
    assert client(new).get(cache.clock_key()) == clock
    pool.disconnect()
    again.disconnect()
