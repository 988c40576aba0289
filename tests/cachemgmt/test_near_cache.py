"""The near cache in front of Redis: served without a round trip, never after Redis would refuse.

Every test talks to a real Redis (the shared test server, or a server of the test's own that
it pauses); no Redis behaviour is simulated.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from cachemgmt import cache
from tests.support.clock import FakeClock
from tests.support.processes import use_redis_server
from tests.support.services import service_missing

pytestmark = pytest.mark.services

NS = "user_context"


@pytest.fixture
def shared_redis(redis_cache) -> str:
    return str(settings.REDIS_URL)


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def warm(store: cache.RedisStore, key: str) -> cache.Hit:
    """Read until the near cache serves ``key`` (its first PING answer grants the lease)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        result = store.get(key, lock_key=None)
        assert isinstance(result, cache.Hit)
        if result.near:
            return result
        time.sleep(0.002)
    raise AssertionError("the near cache never served the entry")


def fill(store: cache.RedisStore, ident: int, payload: bytes) -> tuple[str, list[str]]:
    key = cache.entry_key(NS, ident)
    deps = [cache.namespace_key(NS), cache.dep_user_key(ident)]
    miss = store.get(key, lock_key=None)
    assert isinstance(miss, cache.Miss) and miss.ticket is not None
    assert store.put(key, ticket=miss.ticket, deps=deps, payload=payload, ttl=60, lock_key=None, lock_token="")
    return key, deps


def count_evalsha(store: cache.RedisStore, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = store._get

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "_get", counting)
    return calls


def near_of(store: cache.RedisStore) -> cache.NearCache:
    assert store.near is not None
    return store.near


def test_warm_reads_make_no_round_trip(shared_redis, monkeypatch):
    store = cache.RedisStore()
    key, _ = fill(store, 1, b"ctx-1")
    warm(store, key)
    evalsha = count_evalsha(store, monkeypatch)

    results = [store.get(key, lock_key=None) for _ in range(50)]

    assert all(isinstance(r, cache.Hit) and r.near and r.payload == b"ctx-1" for r in results)
    assert evalsha == []


def test_entry_get_counts_near_hits(shared_redis):
    store = cache.RedisStore()
    cache.reset_store(store)
    key, _ = fill(store, 2, b"ctx-2")
    warm(store, key)

    for _ in range(5):
        assert isinstance(cache.entry_get(NS, 2), cache.Hit)

    counters = cache.stats_read(NS)
    assert counters["near_hits"] >= 5
    assert counters["hits"] >= counters["near_hits"]


@pytest.fixture
def busy_redis(shared_redis) -> Iterator[None]:
    """Keep the Redis server busy with 100 clients sending PINGs (no key is touched).

    A busy event loop writes each pass's replies to many sockets, so the writer's reply and
    the pushes to the near caches land apart in time: the ordering the next test checks.
    """
    binary = shutil.which("redis-benchmark")
    if binary is None:
        service_missing("redis-benchmark is not installed")
    url = urlsplit(shared_redis)
    proc = subprocess.Popen(
        [str(binary), "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-c", "100",
         "-n", "100000000", "-t", "ping", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)
    yield
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_another_process_invalidation_is_seen_by_the_very_next_read(busy_redis):
    # Two stores: two connections, two near caches, as two processes would have. Each round
    # warms the reader's copy, invalidates through the writer, and reads at once.
    reader, writer = cache.RedisStore(), cache.RedisStore()
    for round_ in range(200):
        key, _ = fill(reader, 3, b"v%d" % round_)
        warm(reader, key)
        writer.bump([cache.dep_user_key(3)])
        after = reader.get(key, lock_key=None)
        assert isinstance(after, cache.Miss), f"round {round_}: served a copy Redis had invalidated"


def ready(near: cache.NearCache) -> int:
    """Wait for the connection and the lease (the first lease write's answer); returns the seq."""
    deadline = time.monotonic() + 3
    while True:
        _, seq = near.lookup("-")
        if seq is not None:
            return seq
        assert time.monotonic() < deadline, "no lease"
        time.sleep(0.002)


def make_near(url: str, **kwargs) -> cache.NearCache:
    options = {"prefixes": cache.tracked_prefixes(), "lease_key": cache.near_lease_key(), "socket_timeout": 0.25}
    options.update(kwargs)
    timeout = options["socket_timeout"]

    def pool() -> redis.ConnectionPool:
        return redis.ConnectionPool.from_url(
            url, protocol=3, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
        )

    return cache.NearCache(pool, max_entries=options.pop("max_entries", 10), **options)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["namespace bump", "key deleted", "key expired", "flushdb"])
def test_every_change_to_a_dependency_drops_the_copy(redis_server, how):
    near = make_near(redis_server.url)
    client = raw(redis_server.url)
    deps = [cache.namespace_key(NS), cache.dep_user_key(4)]
    client.mset(dict.fromkeys(deps, 1))
    try:
        near.store("k", b"p", deps, ready(near))
        near.store("k2", b"q", [cache.dep_user_key(40)], near.seq)
        assert near.lookup("k")[0] == b"p"
        if how == "namespace bump":
            client.incr(deps[0])
        elif how == "key deleted":
            client.delete(deps[1])
        elif how == "key expired":
            client.pexpire(deps[1], 1)
            time.sleep(0.05)
            client.exists(deps[1])  # an expired key is reclaimed when touched (or by the sweeper)
        else:
            client.flushdb()
        time.sleep(0.01)

        payload, seq = near.lookup("k")
        assert payload is None and seq is not None  # dropped by the push, the lease still holds
        assert near.lookup("k2")[0] == (None if how == "flushdb" else b"q")
    finally:
        near.close()


def test_a_broken_push_connection_drops_every_copy_then_reconnects(shared_redis):
    store = cache.RedisStore()
    near = near_of(store)
    near._retry_after = 0.0
    key, _ = fill(store, 5, b"ctx-5")
    warm(store, key)
    client = raw(shared_redis)
    tracking = [c for c in client.client_list() if "t" in c["flags"]]
    own = [c for c in tracking if c["addr"] == f"127.0.0.1:{near.connection._sock.getsockname()[1]}"]
    assert own, tracking
    client.client_kill_filter(_id=own[0]["id"])
    time.sleep(0.02)

    result = store.get(key, lock_key=None)

    assert isinstance(result, cache.Hit) and not result.near  # from Redis, the copies are gone
    assert len(near) == 0
    assert warm(store, key).payload == b"ctx-5"  # reconnected (by the thread), tracking again
    cache.RedisStore().bump([cache.dep_user_key(5)])
    assert isinstance(store.get(key, lock_key=None), cache.Miss)


def test_a_copy_is_not_stored_when_a_push_arrived_between_the_read_and_the_store(shared_redis):
    near = make_near(shared_redis)
    try:
        seq = ready(near)
        raw(shared_redis).incr(cache.dep_user_key(6006))  # any push, not one this copy depends on
        time.sleep(0.01)
        assert near.lookup("k")[1] != seq  # the push was read ...
        near.store("k", b"p", [cache.dep_user_key(6)], seq)  # ... so a read made before it is not kept
        assert len(near) == 0
        near.store("k", b"p", [cache.dep_user_key(6)], near.lookup("k")[1])
        assert len(near) == 1
    finally:
        near.close()


def test_a_copy_is_not_stored_across_a_reconnection(shared_redis):
    near = make_near(shared_redis, retry_after=0.0)
    try:
        seq = ready(near)
        client = raw(shared_redis)
        own = [c for c in client.client_list() if c["addr"] == f"127.0.0.1:{near.connection._sock.getsockname()[1]}"]
        client.client_kill_filter(_id=own[0]["id"])  # pushes sent now would be lost with it
        time.sleep(0.02)
        assert near.lookup("k") == (None, None)
        ready(near)  # reconnected
        near.store("k", b"p", [cache.dep_user_key(7)], seq)
        assert len(near) == 0
    finally:
        near.close()


def test_size_is_bounded_and_the_index_follows(shared_redis):
    near = make_near(shared_redis, max_entries=3)
    try:
        seq = ready(near)
        for i in range(5):
            near.store(f"k{i}", b"p", [f"d{i}", "shared"], seq)
        assert len(near) == 3
        assert [near.lookup(f"k{i}")[0] for i in range(5)] == [None, None, b"p", b"p", b"p"]
        assert set(near.deps_index) == {"d2", "d3", "d4", "shared"}
        near.drop_deps(["shared"])
        assert len(near) == 0 and near.deps_index == {}
    finally:
        near.close()


@pytest.mark.slow
def test_a_copy_never_outlives_its_entry_in_redis(shared_redis):
    store = cache.RedisStore()
    key, _ = fill(store, 11, b"ctx-11")
    raw(shared_redis).pexpire(key, 300)  # the entry has 0.3 s left in Redis
    warm(store, key)
    time.sleep(0.35)
    assert not isinstance(store.get(key, lock_key=None), cache.Hit)


@pytest.mark.slow
def test_the_lease_runs_out_while_redis_does_not_answer_and_late_answers_drop_copies(redis_server):
    clock = FakeClock()
    near = make_near(redis_server.url, socket_timeout=0.2, max_entries=100, clock=clock, maintain_every=0)
    try:
        near.lookup("k")  # connects, sends the first lease write
        time.sleep(0.05)
        clock.now += 0.01
        payload, seq = near.lookup("k")  # its answer grants a lease of socket_timeout / 2
        assert payload is None and seq is not None
        near.store("k", b"p", ["d"], seq)
        clock.now += 0.01
        assert near.lookup("k")[0] == b"p"

        redis_server.pause()
        clock.now += near.lease  # past the lease: no copy is served, whatever is cached
        assert near.lookup("k") == (None, None)  # (sends a lease write that the paused Redis holds)
        clock.now += near.lease * 2
        assert near.lookup("k") == (None, None)  # looked again a lease later: no answer yet
        assert len(near) == 1

        redis_server.resume()
        time.sleep(0.05)
        clock.now += 1.0  # the write sent during the pause is answered a second later
        assert near.lookup("k") == (None, None)
        assert len(near) == 0  # a late answer: a writer may have given up on Redis meanwhile
        assert near.connection is not None  # (dropped for lateness, not for a broken connection)
    finally:
        redis_server.resume()
        near.close()


def test_an_idle_process_keeps_its_copies_and_renews_at_most_every_quarter_lease(shared_redis):
    clock = FakeClock()
    near = make_near(shared_redis, socket_timeout=0.2, clock=clock, maintain_every=0)
    sent: list[float] = []
    try:
        near.lookup("k")  # connects, sends the first lease write
        real_send = near.connection.send_command
        near.connection.send_command = lambda *args: (sent.append(clock.now), real_send(*args))
        time.sleep(0.05)
        clock.now += 0.001
        _, seq = near.lookup("k")
        assert seq is not None
        near.store("k", b"p", ["d"], seq)
        for _ in range(40):  # a busy process: a lookup every 5 ms for 200 ms
            clock.now += 0.005
            near.lookup("k")
            time.sleep(0.002)
        assert len(sent) <= 200 / (near.lease * 1000 / 4) + 1

        clock.now += 30.0  # idle for 30 s: the last answer came long ago, unread
        time.sleep(0.05)
        assert near.lookup("k") == (None, None)  # the lease ran out...
        time.sleep(0.05)
        clock.now += 0.001
        assert near.lookup("k")[0] == b"p"  # ...and the next answer renews it; the copy stayed
    finally:
        near.close()


def test_a_long_idle_process_closes_its_connection_and_reopens_it_on_demand(shared_redis):
    clock = FakeClock()
    near = make_near(shared_redis, clock=clock, maintain_every=0)
    try:
        near.lookup("k")
        time.sleep(0.05)
        near.store("k", b"p", ["d"], near.lookup("k")[1])
        seq = near.seq
        clock.now += 599.0
        near.maintain()  # what the thread runs every second: reads what arrived
        assert near.connection is not None and len(near) == 1
        clock.now += 1.0
        near.maintain()  # ten minutes without a lookup: the connection is given back
        assert near.connection is None and len(near) == 0 and near.seq != seq
        near.lookup("k")
        assert near.connection is not None
    finally:
        near.close()


def test_the_thread_connects_and_the_request_path_does_not(shared_redis):
    near = make_near(shared_redis)
    try:
        assert near.lookup("k") == (None, None)
        assert near.connection is None  # the lookup only woke the thread
        ready(near)
        assert near.connection is not None and near.thread_pid == os.getpid()
    finally:
        near.close()


@pytest.fixture
def reader_and_writer(redis_server, settings) -> Iterator[tuple[cache.RedisStore, cache.RedisStore, str]]:
    """Two stores on a Redis server of the test's own; the reader serves one entry near."""
    use_redis_server(settings, redis_server, timeout=0.2, max_connections=5)
    reader, writer = cache.RedisStore(), cache.RedisStore()
    key, _ = fill(reader, 7, b"ctx-7")
    warm(reader, key)
    yield reader, writer, key
    redis_server.resume()
    raw(redis_server.url).client_unpause()
    reader.close()
    writer.close()


@pytest.mark.slow
def test_a_writer_that_cannot_reach_redis_returns_only_after_readers_stop_serving_copies(
    redis_server, reader_and_writer
):
    # Real clocks, a real pause: the writer's invalidation times out (it is lost), and the
    # reader's next read does not come from its near cache.
    reader, writer, key = reader_and_writer
    redis_server.pause()
    with pytest.raises(cache.CacheUnavailable):
        writer.bump([cache.dep_user_key(7)])

    with pytest.raises(cache.CacheUnavailable):
        reader.get(key, lock_key=None)  # the lease ran out: to Redis, which times out


@pytest.mark.slow
def test_a_writer_refused_at_once_returns_only_after_readers_stop_serving_copies(redis_server, reader_and_writer):
    # A demoted primary (what a failover's fence makes of the old one) refuses the writer's
    # invalidation at once, long before the reader's lease has run out; the refusal must not
    # return while the reader still serves the copy it should have defeated.
    reader, writer, key = reader_and_writer
    client = raw(redis_server.url)
    near = near_of(reader)
    try:
        # A replica of nothing: read-only, its data kept. No lookup in between: one could send a
        # lease write whose refusal would drop the copy before the check below, fix or no fix.
        client.replicaof("127.0.0.1", 1)
        with pytest.raises(cache.CacheUnavailable):
            writer.bump([cache.dep_user_key(7)])
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert near.lookup(key)[0] is None, "a copy was served after the invalidation was refused"
            time.sleep(0.005)
    finally:
        client.replicaof("NO", "ONE")


@pytest.mark.slow
def test_a_write_pause_stops_the_leases_as_it_stops_the_invalidations(redis_server, reader_and_writer):
    # CLIENT PAUSE WRITE (a failover's first step) still answers PING; it holds every write,
    # the invalidation's and the lease's alike, so copies stop being served.
    reader, writer, key = reader_and_writer
    raw(redis_server.url).client_pause(1500, all=False)
    with pytest.raises(cache.CacheUnavailable):
        writer.bump([cache.dep_user_key(7)])
    near = near_of(reader)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # a reader whose other requests keep looking
        assert near.lookup(key)[0] is None, "a copy was served during a write pause"
        time.sleep(0.005)


@pytest.mark.slow
def test_an_error_answer_to_the_lease_drops_every_copy(redis_server):
    near = make_near(redis_server.url, retry_after=5.0)
    client = raw(redis_server.url)
    try:
        near.store("k", b"p", ["d"], ready(near))
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")  # out of memory: writes are refused
        deadline = time.monotonic() + 2
        while near.connection is not None:
            near.lookup("k")
            assert time.monotonic() < deadline, "the refused lease write went unnoticed"
            time.sleep(0.01)
        assert len(near) == 0 and near.lookup("k") == (None, None)
    finally:
        client.config_set("maxmemory", "0")
        near.close()


def test_own_invalidations_drop_copies_before_the_push(shared_redis):
    store = cache.RedisStore()
    key, _ = fill(store, 8, b"ctx-8")
    warm(store, key)
    store.bump([cache.dep_user_key(8)])
    assert len(near_of(store)) == 0


def test_a_forked_child_never_uses_the_parent_socket(shared_redis):
    store = cache.RedisStore()
    near = near_of(store)
    key, _ = fill(store, 9, b"ctx-9")
    warm(store, key)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: os.register_at_fork has run
        try:
            ok = near.connection is None and len(near) == 0 and near.thread_pid == 0
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.waitpid(pid, 0)
    os.close(read_end)
    assert answer == b"1"
    assert near.connection is not None and len(near) == 1  # the parent's connection and copies are intact
    assert store.get(key, lock_key=None) == cache.Hit(b"ctx-9", near=True)


def test_near_cache_can_be_turned_off(shared_redis, settings, monkeypatch):
    settings.CACHEMGMT = {**settings.CACHEMGMT, "NEAR_MAX_ENTRIES": 0}
    store = cache.RedisStore()
    assert store.near is None
    key, _ = fill(store, 10, b"ctx-10")
    evalsha = count_evalsha(store, monkeypatch)
    results = [store.get(key, lock_key=None) for _ in range(5)]
    assert all(isinstance(r, cache.Hit) and not r.near for r in results)
    assert len(evalsha) == 5


@pytest.mark.slow
def test_a_redis_that_refuses_tracking_leaves_the_near_cache_off(redis_server, caplog):
    # An ACL user without the CLIENT command, as some managed Redis services hand out.
    raw(redis_server.url).acl_setuser("limited", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-client"])
    url = redis_server.url.replace("redis://", "redis://limited@")
    near = make_near(url, retry_after=0, maintain_every=0)
    with caplog.at_level("WARNING", logger="cachemgmt.cache"):
        assert near.lookup("k") == (None, None)
        assert near.lookup("k") == (None, None)
    assert near.refused
    assert [r.getMessage() for r in caplog.records] == ["near cache off: Redis refused client tracking"]


@pytest.mark.slow
def test_reconnect_attempts_back_off_and_are_logged_once(redis_server, caplog):
    clock = FakeClock()
    near = make_near(redis_server.url, socket_timeout=0.1, clock=clock, maintain_every=0)
    redis_server.stop()
    attempts = []
    real_open = near._open

    def counting():
        attempts.append(clock.now)
        return real_open()

    near._open = counting
    with caplog.at_level("WARNING", logger="cachemgmt.cache"):
        for _ in range(80):  # 20 s of requests, one every 250 ms
            assert near.lookup("k") == (None, None)
            clock.now += 0.25
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) == 4
    for gap, backoff in zip(gaps, [1.0, 2.0, 4.0, 8.0], strict=True):
        assert 0.8 * backoff <= gap <= backoff + 0.25  # jittered, never sooner than 80 %
    assert [r.getMessage() for r in caplog.records] == ["near cache unavailable: serving from Redis"]


@pytest.mark.slow
def test_copies_stored_together_expire_spread_over_the_last_quarter_of_their_ttl(shared_redis):
    clock = FakeClock()
    near = make_near(shared_redis, socket_timeout=1.0, max_entries=100, ttl=10.0, clock=clock, maintain_every=0)
    try:
        seq = ready(near)
        keys = [f"k{i}" for i in range(50)]
        for key in keys:
            near.store(key, b"p", ["d"], seq)
        stored_at, expired_at = clock.now, {}
        while len(expired_at) < len(keys) and clock.now - stored_at < 11:
            clock.now += 0.1  # steps shorter than the lease (0.5 s), each answered by Redis
            time.sleep(0.002)
            for key in keys:
                if key not in expired_at and near.lookup(key)[0] is None:
                    expired_at[key] = clock.now - stored_at
        lives = sorted(expired_at.values())
        assert len(lives) == len(keys), "every copy expires within its ttl"
        assert lives[0] >= 7.5 - 0.1 and lives[-1] <= 10.0 + 0.1
        assert lives[-1] - lives[0] >= 1.0, f"copies stored together expire together: {lives}"
    finally:
        near.close()


@pytest.mark.slow
def test_a_busy_process_renews_its_lease_twice_a_lease(redis_server):
    """Each renewal wakes Redis and costs the worker a send and a read: two a lease, and every
    lookup of a busy process still finds the lease valid."""
    clock = FakeClock()
    near = make_near(redis_server.url, socket_timeout=0.2, clock=clock, maintain_every=0)  # lease: 0.1 s
    client = raw(redis_server.url)
    try:
        ready(near)

        def sets() -> int:
            return int(client.info("commandstats").get("cmdstat_set", {}).get("calls", 0))

        before, served = sets(), 0
        for _ in range(200):  # one second of lookups, 5 ms apart: ten leases
            clock.now += 0.005
            time.sleep(0.001)  # (Redis answers in real time)
            served += near.lookup("k")[1] is not None
        renewals = sets() - before
        assert served == 200, "the lease lapsed under a steady stream of lookups"
        assert 18 <= renewals <= 21, renewals
    finally:
        near.close()
