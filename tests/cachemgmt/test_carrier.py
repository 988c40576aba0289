"""The carrier: writes that bypass the project's signals still reach cached contexts, and a carrier
that is down or behind makes readers go to the database rather than serve what may be stale."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction

from accounts.models import User
from accounts.selectors import user_context_get
from cachemgmt import cache, carrier
from cachemgmt.listener import ChangeListener
from cachemgmt.models import DependencyChange
from cachemgmt.services import changes_record
from tests.factories import MembershipFactory

# A carrier thread beside the test's writes: the embedded test database (in-memory SQLite in
# shared-cache mode) locks whole tables between threads, so these run on PostgreSQL; the SQLite
# topology is covered across processes on a file database (test_freshness.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.services]

BOUND = 3.0  # generous: this checks that a change arrives, the benchmark measures how fast


@pytest.fixture
def running_carrier(postgres) -> Iterator[None]:
    carrier.carrier_enable()
    carrier.carrier_start()
    try:
        wait_until(carrier.cache_trusted, what="the carrier to catch up")
        yield
    finally:
        carrier.carrier_stop()
        carrier.carrier_enable(False)
        connection.close()


def loads() -> int:
    """Statements a context load costs: one on PostgreSQL, two elsewhere."""
    return 1 if connection.vendor == "postgresql" else 2


def wait_until(condition, *, what: str, timeout: float = BOUND) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - started


def settle() -> None:
    """Wait until the carrier has applied every change recorded so far (the test's own setup
    writes too), so what follows starts from a quiet cache."""
    newest = DependencyChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
    wait_until(lambda: carrier.carrier_status().cursor >= newest, what="the carrier to apply the setup")


def is_active(user_id: int) -> bool:
    context = user_context_get(user_id=user_id)
    return context is not None and context.is_active


def test_a_queryset_update_reaches_the_cached_context(running_carrier, django_assert_num_queries):
    user_id = MembershipFactory().user_id
    settle()
    assert is_active(user_id)
    with django_assert_num_queries(0):
        assert is_active(user_id)  # cached
    User.objects.filter(pk=user_id).update(is_active=False)  # no signal fires for update()
    wait_until(lambda: not is_active(user_id), what="the update to reach the cache")
    with django_assert_num_queries(0):
        assert not is_active(user_id)  # cached again, fresh


def test_raw_sql_reaches_the_cached_context(running_carrier):
    member = MembershipFactory()
    settle()
    assert user_context_get(user_id=member.user_id).organization_id == member.organization_id  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_membership SET is_active = false WHERE id = %s", [member.pk])
    wait_until(
        lambda: user_context_get(user_id=member.user_id).organization_id is None,  # type: ignore[union-attr]
        what="the raw update to reach the cache",
    )


def test_a_clear_recorded_by_another_process_reaches_this_one(running_carrier, django_assert_num_queries):
    user_id = MembershipFactory().user_id
    settle()
    user_context_get(user_id=user_id)
    # What clear_cache records, from wherever it runs.
    changes_record([DependencyChange(kind="namespace", ident=cache.NAMESPACES.index("user_context"))])
    wait_until(lambda: carrier.carrier_status().cursor >= DependencyChange.objects.latest("id").id, what="the clear")
    with django_assert_num_queries(loads()):  # the entry was defeated: loaded again
        user_context_get(user_id=user_id)


def test_a_stopped_carrier_makes_readers_use_the_database_and_loses_nothing(running_carrier, django_assert_num_queries):
    user_id = MembershipFactory().user_id
    settle()
    assert is_active(user_id)
    carrier.carrier_stop()  # as if its process died (a standby takes over once its lock expires)
    User.objects.filter(pk=user_id).update(is_active=False)
    # Its last heartbeat is trusted for TRUST_SECONDS (the bound), then no longer.
    time.sleep(carrier.TRUST_SECONDS + 0.2)
    assert not carrier.cache_trusted()
    with django_assert_num_queries(loads()):
        assert not is_active(user_id)  # from the database: fresh, though the cache is not
    carrier.carrier_start()  # a new carrier starts from the recorded cursor (or the newest change)
    wait_until(carrier.cache_trusted, what="the new carrier to catch up", timeout=carrier.LEADER_TTL_SECONDS + BOUND)
    assert not is_active(user_id)
    with django_assert_num_queries(0):
        assert not is_active(user_id)


def test_the_carrier_reports_its_role_cursor_and_lag(running_carrier):
    status = carrier.carrier_status()
    assert status.role in {"leader", "local"}
    assert status.lag_seconds() is not None and status.lag_seconds() < BOUND
    assert status.cursor >= 0


@pytest.mark.services
def test_a_write_committed_late_in_a_long_transaction_reaches_the_cache_at_its_commit(running_carrier, postgres):
    """Its change gets a lower id than changes committed meanwhile: the carrier, already past
    those, still applies it when it commits."""
    early, late = MembershipFactory().user_id, MembershipFactory().user_id
    settle()
    assert is_active(early) and is_active(late)
    wrote, finish = threading.Event(), threading.Event()

    def long_transaction() -> None:
        try:
            with transaction.atomic():
                User.objects.filter(pk=early).update(is_active=False)
                wrote.set()
                finish.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=long_transaction)
    thread.start()
    assert wrote.wait(10)
    User.objects.filter(pk=late).update(is_active=False)
    wait_until(lambda: not is_active(late), what="the later change")
    assert is_active(early)  # not committed yet: still active, in the database too
    finish.set()
    thread.join(10)
    wait_until(lambda: not is_active(early), what="the change committed late")


def test_a_session_ended_by_raw_sql_ends_its_tokens_through_the_carrier(running_carrier):
    from rest_framework.test import APIClient

    from tests.support.tokens import access_token

    user = MembershipFactory().user
    token = access_token(user)
    settle()
    client = APIClient()
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200  # cached now
    with connection.cursor() as cursor:  # another service ends every session of the user
        cursor.execute(
            "UPDATE accounts_session SET ended_at = now(), end_reason = 'elsewhere' WHERE user_id = %s", [user.pk]
        )
    wait_until(
        lambda: client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401,
        what="the ended session to reach the cache",
    )


@pytest.fixture
def own_carrier(postgres, settings) -> Iterator[None]:
    """This process's own carrier for its in-process cache, as in a deployment without Redis."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.reset_store()
    carrier.carrier_enable()
    carrier.carrier_start()
    try:
        wait_until(carrier.cache_trusted, what="the carrier to catch up")
        assert carrier.carrier_status().role == "local"
        yield
    finally:
        carrier.carrier_stop()
        carrier.carrier_enable(False)
        connection.close()


def test_requests_renew_the_trust_while_the_carrier_sleeps(own_carrier, django_assert_num_queries):
    user_id = MembershipFactory().user_id
    settle()
    assert is_active(user_id)
    caught_up_at = carrier.carrier_status().caught_up_at
    time.sleep(carrier.TRUST_SECONDS + 0.3)  # nothing committed: the carrier has not woken since
    with django_assert_num_queries(0):
        assert is_active(user_id)  # the request found the trust run out, renewed it, used the cache
    assert carrier.carrier_status().caught_up_at > caught_up_at + carrier.TRUST_SECONDS


def test_a_change_the_carrier_has_not_applied_yet_stops_the_renewal(own_carrier, monkeypatch):
    """Once the carrier has taken the notification and is applying the change, no request renews
    the trust until the change is applied. (The notification waiting on the socket is
    ``test_a_notification_on_the_socket_ends_the_quiet``. Before it reaches the socket, PostgreSQL
    sends it after the writer's COMMIT has returned, so a request in between is served as in any
    trusted process: that window is the documented propagation delay for writers other than the
    project, which the hardening tests measure.)"""
    user_id = MembershipFactory().user_id
    settle()
    assert is_active(user_id)  # cached
    time.sleep(carrier.TRUST_SECONDS + 0.3)  # the trust has run out; only a renewal brings it back
    applying, release = threading.Event(), threading.Event()
    apply_pending = carrier._apply_pending

    def held(*, shared: bool) -> bool:
        applying.set()
        release.wait(10)
        return apply_pending(shared=shared)

    monkeypatch.setattr(carrier, "_apply_pending", held)
    User.objects.filter(pk=user_id).update(is_active=False)  # NOTIFY at commit
    assert applying.wait(5), "the carrier woke for the notification"
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert not is_active(user_id), "the cached context was served before the change was applied"
        time.sleep(0.002)
    release.set()
    wait_until(carrier.cache_trusted, what="the carrier to apply the change")
    assert not is_active(user_id)


def test_a_notification_on_the_socket_ends_the_quiet(postgres):
    """What a request's check sees while the carrier is blocked in its wait and has not been
    scheduled yet: the notification is on the socket, and the check must say so."""
    listener = ChangeListener()
    try:
        assert listener.wait(0.1), "connected and listening"
        assert not listener.quiet(), "the carrier is not waiting"
        listener._waiting = True  # the carrier's state during its poll (white-box: the window is too short to hit)
        assert listener.quiet()
        changes_record([DependencyChange(kind="user", ident=1)])  # committed, with a NOTIFY
        wait_until(lambda: not listener.quiet(), what="the notification to reach the socket")
        for _ in range(20):  # and it stays there until the carrier reads it
            assert not listener.quiet()
            time.sleep(0.005)
        listener._waiting = False
        assert listener.wait(1.0), "the carrier reads the notification"
    finally:
        listener.release()


def test_a_standby_request_renews_the_trust_from_the_leaders_heartbeat(postgres, redis_cache):
    """Another process leads (it holds the lock and writes the heartbeat); this one stands by.
    Without a heartbeat its requests read the database; once one is written, the next request
    renews the trust from it, without waiting for the standby's thread."""
    token = cache.lock_acquire(carrier.LEADER_LOCK, ttl=60)
    assert token is not None
    carrier.carrier_enable()
    carrier.carrier_start()
    try:
        wait_until(lambda: carrier.carrier_status().role == "standby", what="this process to stand by")
        time.sleep(carrier.TRUST_SECONDS + 0.1)
        assert not carrier.cache_trusted(), "no heartbeat: not trusted"
        for _ in range(5):
            followed = carrier.carrier_status().caught_up_at  # set only by the standby's thread
            cache.shared_set(carrier.HEARTBEAT, json.dumps([time.time(), 0]), ttl=carrier.HEARTBEAT_TTL_SECONDS)
            time.sleep(carrier.RENEW_RETRY_SECONDS + 0.01)
            trusted = carrier.cache_trusted()
            if carrier.carrier_status().caught_up_at == followed:
                break  # the thread did not look meanwhile: the request renewed it (or did not)
        assert trusted, "the request renewed the trust from the heartbeat"
        assert carrier.carrier_status().caught_up_at == followed, "the standby's thread looked every time"
    finally:
        carrier.carrier_stop()
        carrier.carrier_enable(False)
        cache.lock_release(carrier.LEADER_LOCK, token)
        connection.close()


def test_a_forked_child_starts_its_own_carrier_and_flusher(running_carrier, monkeypatch):
    """The request path asks whether this process started its carrier (and its counter flusher)
    without asking the kernel for its process id each time: a forked child, whose threads did not
    survive the fork, must still start its own at its first request."""
    import os
    import select
    import signal

    from cachemgmt import counters

    monkeypatch.setattr(counters, "_enabled", [True])  # as a server process has it
    monkeypatch.setattr(counters, "_started_here", [True])  # this process "started" its flusher
    monkeypatch.setattr(counters, "_loop", lambda interval: None)  # the child's flusher: a thread that ends

    def carrier_run() -> None:  # the child's carrier thread: started, caught up, nothing else
        carrier._trust_until(time.time())
        carrier._stop.wait(5)

    monkeypatch.setattr(carrier, "_run", carrier_run)  # this process's own carrier runs already
    carrier.cache_trusted()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: os.register_at_fork has run
        try:
            started: list[str] = []
            real_thread = threading.Thread

            def recording(*args, **kwargs):
                started.append(kwargs.get("name", ""))
                return real_thread(*args, **kwargs)

            threading.Thread = recording  # type: ignore[misc]
            counters.stats_flusher_start(interval=3600)
            carrier.cache_trusted()
            own_carrier = carrier.carrier_status().pid == os.getpid()
            ok = {"dependency-carrier", "cache-stats-flush"} <= set(started) and own_carrier
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        answer = os.read(read_end, 1) if ready else b"timeout"
    finally:
        os.waitpid(pid, 0)
        os.close(read_end)
    assert answer == b"1"
