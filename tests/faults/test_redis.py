"""Redis killed, then restarted, and Redis hung, under load from web processes of the test's own."""

from __future__ import annotations

import time

import pytest
from django_redis import get_redis_connection

from tests.support.faults import CommittedState, Traffic, log_lines

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


def circuit_events(*logs) -> tuple[int, int]:
    """(closed -> open transitions, transitions back to closed) logged by the web processes' workers."""
    opened = closed = 0
    for log in logs:
        for record in log_lines(log):
            event = str(record.get("event", ""))
            opened += event.startswith("cache circuit opened") and record.get("previous") == "closed"
            closed += event.startswith("cache circuit closed")
    return opened, closed


def test_redis_killed_under_load_then_restarted(postgres, own_redis, webs, hardening_report):
    """No 5xx while Redis is gone; after its restart no stale context and the circuits close by themselves."""
    state = CommittedState(users=12)
    (web,) = webs(1, workers=2, REDIS_URL=own_redis.url)
    with Traffic(state, [web.port], readers=4, writers=1, max_seconds=60) as traffic:
        traffic.run_for(1.5)
        traffic.phase = "outage"
        own_redis.stop()
        down_at = time.monotonic()
        traffic.run_for(2.5)
        own_redis.start()
        up_at = time.monotonic()
        traffic.phase = "after"
        before = traffic.tally.sent
        traffic.run_for(3.0)  # three breaker cooldowns: every worker has probed and closed
        after_restart = traffic.tally.sent - before
        stale_after_restart = traffic.tally.stale
    tally = traffic.stop()
    opened, closed = circuit_events(web.log)
    entries = get_redis_connection("default").keys("*:e:user_context:*")
    hardening_report(
        **tally.figures(),
        outage_s=round(up_at - down_at, 1),
        requests_after_restart=after_restart,
        circuits_opened=opened,
        circuits_closed=closed,
        entries_after_restart=len(entries),
    )
    assert tally.failed == 0, tally.samples
    assert stale_after_restart == 0 and tally.stale == 0, tally.samples
    assert set(tally.statuses) == {200}
    assert opened >= 1 and closed == opened  # every circuit that opened closed again, without help
    assert entries, "contexts are cached in Redis again after the restart"


def test_redis_hung_under_load_requests_fall_back_within_the_bound(postgres, own_redis, webs, hardening_report):
    """SIGSTOP: connections hang instead of failing; the 250 ms socket timeout bounds every request."""
    state = CommittedState(users=12)
    (web,) = webs(1, workers=2, REDIS_URL=own_redis.url)
    with Traffic(state, [web.port], readers=4, writers=1, max_seconds=60) as traffic:
        traffic.run_for(1.5)
        traffic.phase = "paused"
        own_redis.pause()
        paused = traffic.tally.sent
        try:
            traffic.run_for(2.5)
        finally:
            own_redis.resume()
        during_pause = traffic.tally.sent - paused
        traffic.phase = "after"
        traffic.run_for(2.5)
    tally = traffic.stop()
    opened, closed = circuit_events(web.log)
    hardening_report(
        **tally.figures(), requests_during_pause=during_pause, circuits_opened=opened, circuits_closed=closed
    )
    assert tally.failed == 0, tally.samples
    assert during_pause > 0
    assert tally.stale == 0, tally.samples
    # Two timed-out Redis calls (the lookup and a counter flush) before the circuit opens, then
    # the database: far below the web workers' timeout, whatever the pause's length.
    assert tally.worst_by_phase["paused"] < 2.0
    assert closed == opened


def test_invalidation_is_tried_while_this_process_circuit_is_open(own_redis):
    """A writer whose circuit is open still delivers its invalidation once Redis answers again:
    other processes may be reading Redis already and would otherwise serve what it defeated."""
    from cachemgmt import cache

    store = cache.get_store()
    assert isinstance(store, cache.RedisStore)
    key = cache.dep_user_key(1)
    store.breaker.record_failure(RuntimeError("earlier outage"))
    store.breaker.record_failure(RuntimeError("earlier outage"))
    assert store.breaker.state == "open" and not store.breaker.allow()

    cache.deps_bump([key])

    client = get_redis_connection("default")
    assert client.get(key) is not None  # delivered, past the open circuit
    assert store.breaker.state == "closed"


def test_a_process_back_from_an_outage_clears_what_others_failed_to_invalidate(own_redis, monkeypatch):
    """Process W's invalidation never reaches Redis during an outage, and W never calls Redis
    again (a command that exits). Process R, whose circuit opened during the outage, must not
    serve the entry W's write should have defeated once Redis answers again."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from accounts import services
    from accounts.selectors import user_context_get
    from cachemgmt import cache
    from tests.factories import UserFactory
    from tests.support.clock import FakeClock

    def lost(*args, **kwargs):
        raise RedisConnectionError("the outage swallowed this invalidation")

    clock = FakeClock()
    reader = cache.RedisStore(breaker=cache.CircuitBreaker(threshold=2, cooldown=1.0, clock=clock))
    writer = cache.RedisStore(breaker=cache.CircuitBreaker(threshold=2, cooldown=1.0, clock=clock))
    monkeypatch.setattr(writer, "_bump", lost)
    user = UserFactory()
    services.profile_update(user_id=user.pk, display_name="before")
    cache.reset_store(reader)
    assert user_context_get(user_id=user.pk).public["user"]["display_name"] == "before"  # type: ignore[union-attr]

    own_redis.pause()
    try:
        cache.reset_store(writer)
        services.profile_update(user_id=user.pk, display_name="after")
        assert writer.lost_invalidations
        cache.reset_store(reader)
        for _ in range(2):  # R's lookups time out: its circuit opens, it reads the database
            assert user_context_get(user_id=user.pk).public["user"]["display_name"] == "after"  # type: ignore[union-attr]
        assert reader.breaker.state == "open"
    finally:
        own_redis.resume()

    clock.now += 1.0  # R probes Redis again; W never does
    assert user_context_get(user_id=user.pk).public["user"]["display_name"] == "after"  # type: ignore[union-attr]
    assert reader.breaker.state == "closed"
