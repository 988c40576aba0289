"""Redis behind Sentinel: configured from the environment alone, and failovers (ordered and kill -9)
under load from two web processes with nothing stale served."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator

import pytest

from cachemgmt import cache
from cachemgmt.cache.keys import replication_marker_key
from tests.factories import PASSWORD, MembershipFactory, UserFactory
from tests.support.faults import CommittedState, Traffic, http, log_lines
from tests.support.sentinel import SentinelSet, use_sentinel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.fixture(params=[None, "s3ntinel-secret"], ids=["no password", "password"])
def any_sentinel_group(request, settings) -> Iterator[SentinelSet]:
    group = SentinelSet.started(password=request.param)
    use_sentinel(settings, group)
    cache.reset_store()
    yield group
    cache.reset_store()
    group.remove()


@pytest.fixture
def sentinel_group(settings) -> Iterator[SentinelSet]:
    group = SentinelSet.started()
    use_sentinel(settings, group)
    cache.reset_store()
    yield group
    cache.reset_store()
    group.remove()


def evalsha_calls(group: SentinelSet, port: int) -> int:
    """EVALSHA commands a server has run for clients (a replica applies script effects, not scripts)."""
    stats = group.server(port).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def seconds_until_serving(group: SentinelSet, started: float) -> float:
    """Seconds from ``started`` until the current primary runs an EVALSHA it had not run yet."""
    primary = group.primary_port()
    assert primary is not None
    baseline = evalsha_calls(group, primary)
    while evalsha_calls(group, primary) == baseline:
        assert time.monotonic() - started < 30, "the new primary never served a request"
        time.sleep(0.01)
    return round(time.monotonic() - started, 2)


def was_cleared_since_promotion(group: SentinelSet) -> bool:
    """The current primary carries the marker of a clear made under its own replication id,
    which its promotion changed: every namespace was cleared on it after it became primary."""
    primary = group.primary_port()
    assert primary is not None
    server = group.server(primary)
    return bool(server.get(replication_marker_key()) == server.info("replication")["master_replid"])


def test_sentinel_deployment_starts_from_the_environment_alone(postgres, any_sentinel_group, webs):
    sentinel_group = any_sentinel_group
    member = MembershipFactory()
    staff = UserFactory(is_staff=True)
    # No CELERY_BROKER_URL: the broker is derived from the Sentinels too (kombu's sentinel transport).
    (web,) = webs(1, workers=1, CELERY_BROKER_URL="", **sentinel_group.env())
    token = http(web.port, "POST", "/api/auth/login", body={"username": member.user.username, "password": PASSWORD})
    assert token.status == 200, token.body
    access = token.json()["access_token"]
    for _ in range(6):
        assert http(web.port, "GET", "/api/me", token=access).status == 200
    primary = sentinel_group.primary_port()
    assert primary is not None
    assert sentinel_group.server(primary).keys("*:e:user_context:*"), "contexts are cached on the primary"
    assert evalsha_calls(sentinel_group, primary) > 0
    staff_login = http(web.port, "POST", "/api/auth/login", body={"username": staff.username, "password": PASSWORD})
    staff_token = staff_login.json()["access_token"]
    deadline = time.monotonic() + 10  # the near cache connects in the background
    while True:
        assert http(web.port, "GET", "/api/me", token=access).status == 200
        stats = http(web.port, "GET", "/api/admin/cache/stats", token=staff_token).json()
        if stats["namespaces"]["user_context"]["near_hits"] > 0:
            break
        assert time.monotonic() < deadline, "the near cache never served behind Sentinel"
        time.sleep(0.1)
    assert stats["backend"] == "redis"
    health = http(web.port, "GET", "/health").json()
    assert health["checks"]["cache"]["status"] == "ok"
    assert health["checks"]["broker"]["status"] == "ok", health["checks"]["broker"]
    queued = http(web.port, "POST", "/api/admin/zones/sync", token=staff_token)
    assert (queued.status, queued.json()["status"]) == (202, "queued")  # sent through the Sentinel broker
    queue = sentinel_group.server(primary).llen("celery")
    assert queue >= 1, "the task waits on the primary's queue (no worker runs in this test)"


def failed_over_unheard(group: SentinelSet, dep: str) -> tuple[cache.RedisStore, int]:
    """A failover this process has not heard of: its store last used the old primary (``dep``
    bumped there), Sentinel has switched, and the old primary is fenced, as another process's
    adoption does. Returns the store and the new primary's port."""
    store = cache.get_store()
    assert isinstance(store, cache.RedisStore) and store.switch_listener is not None
    store.switch_listener.stop(wait=True)  # this process learns of the failover from its own call
    cache.deps_bump([dep])
    old = group.failover()
    group.wait_promoted(old)
    new = group.primary_port()
    assert new is not None and new != old
    group.wait_switched(new)
    group.server(old).replicaof("127.0.0.1", new)
    return store, new


def test_an_invalidation_refused_by_the_demoted_primary_is_delivered_to_the_new_one(sentinel_group):
    """A process that has not heard of the failover yet sends an invalidation to the old primary,
    which a fence (another process's, or Sentinel's) has made a replica: it is refused at once,
    and must land on the new primary rather than be lost."""
    dep = cache.dep_user_key(5)
    store, new = failed_over_unheard(sentinel_group, dep)

    cache.deps_bump([dep])

    assert not store.lost_invalidations, "the invalidation was lost"
    primary = sentinel_group.server(new)
    assert primary.info("replication")["role"] == "master"
    # The bump ran after the new primary was adopted and cleared (it set the clock last).
    assert primary.get(dep) == primary.get(cache.clock_key())
    assert primary.get(replication_marker_key()) == primary.info("replication")["master_replid"]


def test_an_invalidation_refused_during_another_threads_adoption_waits_for_it(sentinel_group):
    """Another thread of the process is adopting the new primary (fencing, waiting out the
    leases) when an invalidation is refused by the old one: it waits for that adoption and is
    then delivered, rather than failing at once because an adoption is under way."""
    dep = cache.dep_user_key(6)
    store, new = failed_over_unheard(sentinel_group, dep)
    # The adoption's lock held by another thread for a while, as the Sentinel listener holds it
    # while it fences and waits (white-box: that window is too short to hit on purpose).
    adoption = store.client.connection_pool.proxy._change_lock
    held, release = threading.Event(), threading.Event()

    def adopting() -> None:
        with adoption:
            held.set()
            release.wait(5)

    other = threading.Thread(target=adopting)
    other.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    try:
        cache.deps_bump([dep])
    finally:
        release.set()
        other.join(5)

    assert not store.lost_invalidations, "the invalidation was lost"
    primary = sentinel_group.server(new)
    assert primary.get(dep) == primary.get(cache.clock_key())


def test_the_near_cache_tracks_only_the_primary_the_data_path_adopted(sentinel_group):
    """The near cache connects (first use, or again after a broken connection) after Sentinel has
    switched but before this process adopted the new primary: it must not take leases from and
    track a server its reads do not go to. Its connection runs the adoption first (fence, wait,
    clear), so both paths use the new primary."""
    store, new = failed_over_unheard(sentinel_group, cache.dep_user_key(7))
    near = store.near
    assert near is not None
    proxy = store.client.connection_pool.proxy
    assert proxy.master_address is not None and proxy.master_address[1] != new, "the reads still go to the old one"

    deadline = time.monotonic() + 10
    while near.connection is None:  # a lookup has the near cache's thread connect
        near.lookup(cache.entry_key("user_context", "u:7"))
        assert time.monotonic() < deadline, "the near cache never connected"
        time.sleep(0.05)

    assert near.connection.port == proxy.master_address[1] == new
    assert was_cleared_since_promotion(sentinel_group), "the new primary was not cleared when adopted"


def test_failovers_under_load_serve_nothing_stale(postgres, sentinel_group, webs, hardening_report):
    """A permission revoked just before and just after ``SENTINEL FAILOVER``, and after ``kill -9``
    of the primary: no answer is older than what was committed when its request was sent."""
    rng = random.Random(17)
    state = CommittedState(users=12)
    a, b = webs(2, workers=2, **sentinel_group.env())
    figures: dict[str, float] = {}
    with Traffic(
        state, [a.port, b.port], readers=4, writers=1, write_kinds=("profile", "membership"), max_seconds=120
    ) as traffic:
        traffic.run_for(1.5)

        # An ordered failover, a revocation on each side of it.
        state.revoke_permission(rng)
        traffic.phase = "failover"
        started = time.monotonic()
        old = sentinel_group.failover()
        state.revoke_permission(rng)
        figures["failover_promoted_s"] = round(sentinel_group.wait_promoted(old), 2)
        figures["failover_serving_s"] = seconds_until_serving(sentinel_group, started)
        traffic.run_for(2.0)
        cleared = [was_cleared_since_promotion(sentinel_group)]
        sentinel_group.wait_replicated(old)  # the old primary follows the new one

        # The primary killed outright, a revocation once it is gone.
        traffic.phase = "kill"
        started = time.monotonic()
        killed = sentinel_group.kill_primary()
        state.revoke_permission(rng)
        figures["kill_promoted_s"] = round(sentinel_group.wait_promoted(killed), 2)
        figures["kill_serving_s"] = seconds_until_serving(sentinel_group, started)
        traffic.phase = "after"
        state.revoke_permission(rng)
        traffic.run_for(3.0)
        cleared.append(was_cleared_since_promotion(sentinel_group))
    tally = traffic.stop()
    changes = [
        record
        for web in (a, b)
        for record in log_lines(web.log)
        if str(record.get("event", "")) == "redis primary changed"
    ]
    hardening_report(
        **tally.figures(),
        **figures,
        revocations=state.counts["revoke"],
        primary_changes_logged=len(changes),
        caches_cleared=sum(1 for record in changes if record.get("cache_cleared")),
    )
    assert tally.stale == 0, tally.samples
    assert tally.failed == 0, tally.samples  # the database answers while Redis moves
    assert state.counts["revoke"] == 4
    assert changes, "the web processes adopted the new primaries"
    # Each new primary was cleared once promoted (by whichever process reached it first: a web
    # worker or this one, whose writer thread uses the cache too).
    assert cleared == [True, True], json.dumps(changes)[:2000]
