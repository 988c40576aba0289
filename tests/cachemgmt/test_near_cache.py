"""The near cache in front of Redis: served without a round trip, never after Redis would refuse.

Every test talks to a real Redis (the shared test server, or a server of the test's own that
it pauses); no Redis behaviour is simulated.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from cachemgmt import cache
from tests.conftest import service_missing

pytestmark = pytest.mark.services

NS = "user_context"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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
    """Wait for the lease (the first PING's answer); returns the seq to store with."""
    deadline = time.monotonic() + 2
    while True:
        _, seq = near.lookup("-")
        if seq is not None:
            return seq
        assert time.monotonic() < deadline, "no lease"
        time.sleep(0.002)


@pytest.mark.parametrize("how", ["namespace bump", "key deleted", "key expired", "flushdb"])
def test_every_change_to_a_dependency_drops_the_copy(redis_server, how):
    near = cache.NearCache(redis_server.url, prefixes=cache.tracked_prefixes(), socket_timeout=0.25, max_entries=10)
    client = raw(redis_server.url)
    deps = [cache.namespace_key(NS), cache.dep_user_key(4)]
    client.mset(dict.fromkeys(deps, 1))
    try:
        near.store("k", b"p", deps, ready(near))
        other = ("k2", b"q", [cache.dep_user_key(40)])
        near.store(*other, near.seq)
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

        assert near.lookup("k")[0] is None
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
    own = [c for c in tracking if c["addr"] == f"127.0.0.1:{near._conn._sock.getsockname()[1]}"]
    assert own, tracking
    client.client_kill_filter(_id=own[0]["id"])
    time.sleep(0.02)

    result = store.get(key, lock_key=None)

    assert isinstance(result, cache.Hit) and not result.near  # from Redis, the copies are gone
    assert len(near) == 0
    assert warm(store, key).payload == b"ctx-5"  # reconnected, tracking again
    cache.RedisStore().bump([cache.dep_user_key(5)])
    assert isinstance(store.get(key, lock_key=None), cache.Miss)


def test_a_copy_is_not_stored_when_a_push_was_processed_after_the_read(shared_redis):
    store = cache.RedisStore()
    near = near_of(store)
    key, deps = fill(store, 6, b"ctx-6")
    warm(store, key)
    near.drop_all()
    payload, seq = near.lookup(key)
    assert payload is None and seq is not None

    near.drop_deps([cache.dep_user_key(999)])  # any push processed in between
    near.store(key, b"ctx-6", deps, seq)

    assert len(near) == 0


def test_size_is_bounded_and_the_index_follows(shared_redis):
    near = cache.NearCache(shared_redis, prefixes=cache.tracked_prefixes(), socket_timeout=0.25, max_entries=3)
    try:
        seq = ready(near)
        for i in range(5):
            near.store(f"k{i}", b"p", [f"d{i}", "shared"], seq)
        assert len(near) == 3
        assert [near.lookup(f"k{i}")[0] for i in range(5)] == [None, None, b"p", b"p", b"p"]
        assert set(near._by_dep) == {"d2", "d3", "d4", "shared"}
        near.drop_deps(["shared"])
        assert len(near) == 0 and near._by_dep == {}
    finally:
        near.close()


def test_the_lease_runs_out_while_redis_does_not_answer_and_late_answers_drop_copies(redis_server):
    clock = FakeClock()
    near = cache.NearCache(
        redis_server.url, prefixes=cache.tracked_prefixes(), socket_timeout=0.2, max_entries=100, clock=clock
    )
    try:
        near.lookup("k")  # connects, sends the first PING
        time.sleep(0.05)
        clock.now += 0.01
        payload, seq = near.lookup("k")  # the answer grants a lease of socket_timeout / 2
        assert payload is None and seq is not None
        near.store("k", b"p", ["d"], seq)
        clock.now += 0.01
        assert near.lookup("k")[0] == b"p"

        redis_server.pause()
        clock.now += near.lease  # past the lease: no copy is served, whatever is cached
        assert near.lookup("k") == (None, None)  # (sends a PING that the paused Redis holds)
        clock.now += near.lease * 2
        assert near.lookup("k") == (None, None)  # looked again a lease later: no answer yet
        assert len(near) == 1

        redis_server.resume()
        time.sleep(0.05)
        clock.now += 1.0  # the PING sent during the pause is answered a second later
        assert near.lookup("k") == (None, None)
        assert len(near) == 0  # a late answer: a writer may have given up on Redis meanwhile
    finally:
        redis_server.resume()
        near.close()


def test_an_idle_process_keeps_its_copies_and_pings_at_most_every_quarter_lease(shared_redis):
    clock = FakeClock()
    near = cache.NearCache(
        shared_redis, prefixes=cache.tracked_prefixes(), socket_timeout=0.2, max_entries=10, clock=clock
    )
    sent: list[float] = []
    try:
        near.lookup("k")  # connects, sends the first PING
        real_send = near._conn.send_command
        near._conn.send_command = lambda *args: (sent.append(clock.now), real_send(*args))
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


def test_a_writer_that_cannot_reach_redis_returns_only_after_readers_stop_serving_copies(redis_server, settings):
    # Real clocks, a real pause: the writer's invalidation times out (it is lost), and the
    # reader's next read does not come from its near cache.
    settings.REDIS_URL = redis_server.url
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_server.url,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
                "CONNECTION_POOL_KWARGS": {"max_connections": 5, "retry_on_timeout": False},
            },
        }
    }
    reader, writer = cache.RedisStore(), cache.RedisStore()
    try:
        key, _ = fill(reader, 7, b"ctx-7")
        warm(reader, key)
        redis_server.pause()
        with pytest.raises(cache.CacheUnavailable):
            writer.bump([cache.dep_user_key(7)])

        with pytest.raises(cache.CacheUnavailable):
            reader.get(key, lock_key=None)  # the lease ran out: to Redis, which times out
    finally:
        redis_server.resume()
        reader.close()
        writer.close()


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
    parent_conn = near._conn

    near.forget_after_fork()  # what os.register_at_fork runs in the child

    assert near._conn is None and len(near) == 0
    assert parent_conn._sock is not None  # not shut down: it still belongs to the parent
    assert warm(store, key).payload == b"ctx-9"  # the child connects on its own
    parent_conn.disconnect()


def test_near_cache_can_be_turned_off(shared_redis, settings, monkeypatch):
    settings.CACHE_NEAR_MAX_ENTRIES = 0
    store = cache.RedisStore()
    assert store.near is None
    key, _ = fill(store, 10, b"ctx-10")
    evalsha = count_evalsha(store, monkeypatch)
    results = [store.get(key, lock_key=None) for _ in range(5)]
    assert all(isinstance(r, cache.Hit) and not r.near for r in results)
    assert len(evalsha) == 5


def test_a_redis_that_refuses_tracking_leaves_the_near_cache_off(redis_server, caplog):
    # An ACL user without the CLIENT command, as some managed Redis services hand out.
    raw(redis_server.url).acl_setuser("limited", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-client"])
    url = redis_server.url.replace("redis://", "redis://limited@")
    near = cache.NearCache(url, prefixes=cache.tracked_prefixes(), socket_timeout=0.25, max_entries=10, retry_after=0)
    with caplog.at_level("WARNING", logger="cachemgmt.cache"):
        assert near.lookup("k") == (None, None)
        assert near.lookup("k") == (None, None)
    assert near.refused
    assert [r.getMessage() for r in caplog.records] == ["near cache off: Redis refused client tracking"]


def test_reconnect_attempts_back_off_and_are_logged_once(redis_server, caplog):
    clock = FakeClock()
    near = cache.NearCache(
        redis_server.url, prefixes=cache.tracked_prefixes(), socket_timeout=0.1, max_entries=10, clock=clock
    )
    redis_server.stop()
    attempts = []
    real_connect = near._connect

    def counting(now):
        attempts.append(now)
        return real_connect(now)

    near._connect = counting
    with caplog.at_level("WARNING", logger="cachemgmt.cache"):
        for _ in range(80):  # 20 s of requests, one every 250 ms
            assert near.lookup("k") == (None, None)
            clock.now += 0.25
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == [1.0, 2.0, 4.0, 8.0]
    assert [r.getMessage() for r in caplog.records] == ["near cache unavailable: serving from Redis"]
