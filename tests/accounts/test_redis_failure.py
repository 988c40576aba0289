"""Redis down or hung: requests still succeed from the database, behind a circuit breaker."""

from __future__ import annotations

import logging

import pytest

from accounts import services
from accounts.selectors import user_context_get
from cachemgmt import cache
from tests.factories import MembershipFactory, RoleFactory
from tests.support.clock import FakeClock
from tests.support.processes import use_redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def own_redis(redis_server, settings):
    """Point the project at a Redis server this test can stop, pause and restart."""
    use_redis_server(settings, redis_server, timeout=0.2, max_connections=20)
    clock = FakeClock()
    store = cache.RedisStore(breaker=cache.CircuitBreaker(threshold=2, cooldown=5.0, clock=clock))
    cache.reset_store(store)
    yield redis_server, store, clock
    cache.reset_store()


def count_redis_calls(store, monkeypatch) -> list[str]:
    """Every command this process sends to Redis (the context store and Django's cache share a client)."""
    calls: list[str] = []
    real = store.client.execute_command

    def counting(*args, **kwargs):
        calls.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(store.client, "execute_command", counting)
    return calls


def test_stopped_redis_falls_back_to_database_then_recovers(own_redis, monkeypatch, caplog, django_assert_num_queries):
    server, store, clock = own_redis
    member = MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))
    assert user_context_get(user_id=member.user_id) is not None
    with django_assert_num_queries(0):
        assert user_context_get(user_id=member.user_id) is not None  # cached in Redis

    server.stop()
    calls = count_redis_calls(store, monkeypatch)
    caplog.set_level(logging.WARNING, logger="cachemgmt.cache")
    for _ in range(10):
        with django_assert_num_queries(1):
            context = user_context_get(user_id=member.user_id)
        assert context is not None and context.public["permissions"] == ["zones.view_zone"]
    # Two failed attempts opened the circuit; the other requests did not touch Redis at all.
    assert len(calls) == 2, calls
    assert store.breaker.state == "open"
    opened = [r for r in caplog.records if "circuit opened" in r.getMessage()]
    assert len(opened) == 1

    server.start()
    clock.now += 5.0  # cooldown over: the next request probes Redis
    assert user_context_get(user_id=member.user_id) is not None
    assert store.breaker.state == "closed"
    closed = [r for r in caplog.records if "circuit closed" in r.getMessage()]
    assert len(closed) == 1
    with django_assert_num_queries(0):
        assert user_context_get(user_id=member.user_id) is not None  # cached again


def test_invalidation_lost_while_redis_hung_is_not_served_after_recovery(own_redis, django_assert_num_queries):
    """Redis paused (SIGSTOP) keeps its entries; a write made meanwhile must still win."""
    server, store, clock = own_redis
    member = MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))
    assert user_context_get(user_id=member.user_id).public["permissions"] == ["zones.view_zone"]  # type: ignore[union-attr]

    server.pause()
    try:
        member.role.permissions.clear()  # its invalidation cannot reach Redis
        assert store.breaker.state in {"closed", "open"}
        context = user_context_get(user_id=member.user_id)
        assert context is not None and context.public["permissions"] == []
        assert store.breaker.state == "open"
    finally:
        server.resume()

    clock.now += 5.0
    # The stale entry is still in Redis, but recovery cleared every namespace first.
    context = user_context_get(user_id=member.user_id)
    assert context is not None and context.public["permissions"] == []
    assert store.breaker.state == "closed"


def test_invalidation_lost_in_transit_is_not_served_afterwards(own_redis, monkeypatch):
    """The client could not reach Redis for one invalidation while Redis kept its entries."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    _, store, clock = own_redis
    member = MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))
    assert user_context_get(user_id=member.user_id).public["permissions"] == ["zones.view_zone"]  # type: ignore[union-attr]
    real_bump = store._bump
    partitioned = True

    def partitioned_bump(*args, **kwargs):
        if partitioned:
            raise RedisConnectionError("network partition")
        return real_bump(*args, **kwargs)

    monkeypatch.setattr(store, "_bump", partitioned_bump)
    member.role.permissions.clear()  # its invalidations never reach Redis
    assert store.lost_invalidations
    partitioned = False
    clock.now += 5.0  # whether or not the failures opened the circuit, it may probe now

    context = user_context_get(user_id=member.user_id)  # Redis reachable again
    assert context is not None and context.public["permissions"] == []
    assert not store.lost_invalidations


def test_me_answers_200_with_redis_stopped(own_redis, api_client, bearer):
    server, store, _ = own_redis
    member = MembershipFactory()
    headers = bearer(member.user)
    assert api_client.get("/api/me", **headers).status_code == 200
    server.stop()
    for _ in range(5):
        assert api_client.get("/api/me", **headers).status_code == 200
    assert store.breaker.state == "open"
    # Writes and revocations still work through the database path.
    services.user_set_active(user_id=member.user_id, is_active=False)
    assert api_client.get("/api/me", **headers).status_code == 401


def test_login_works_and_is_throttled_with_redis_stopped(own_redis, api_client, settings):
    server, _, _ = own_redis
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 2}
    member = MembershipFactory()
    server.stop()
    from tests.factories import PASSWORD

    ok = api_client.post("/api/auth/login", {"username": member.user.username, "password": PASSWORD}, format="json")
    assert ok.status_code == 200
    for _ in range(2):
        bad = api_client.post("/api/auth/login", {"username": member.user.username, "password": "no"}, format="json")
        assert bad.status_code == 401
    throttled = api_client.post("/api/auth/login", {"username": member.user.username, "password": "no"}, format="json")
    assert throttled.status_code == 429
