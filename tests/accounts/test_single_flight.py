"""Concurrent misses for the same user cause one database load."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from accounts import selectors
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_misses_for_one_user_load_once(monkeypatch):
    membership = MembershipFactory()
    loads: list[int] = []
    real_load = selectors.user_context_load

    def counting_load(*, user_id: int):
        loads.append(user_id)
        time.sleep(0.05)  # keep the filler busy while the others arrive
        return real_load(user_id=user_id)

    monkeypatch.setattr(selectors, "user_context_load", counting_load)
    barrier = threading.Barrier(8)
    results: list[object] = []

    def reader() -> None:
        try:
            barrier.wait()
            results.append(selectors.user_context_get(user_id=membership.user_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 8
    assert all(r is not None and r.user_id == membership.user_id for r in results)  # type: ignore[attr-defined]
    assert loads == [membership.user_id]


def test_misses_for_different_users_do_not_wait_for_each_other(monkeypatch):
    members = [MembershipFactory() for _ in range(4)]
    loads: list[int] = []
    real_load = selectors.user_context_load

    def counting_load(*, user_id: int):
        loads.append(user_id)
        return real_load(user_id=user_id)

    monkeypatch.setattr(selectors, "user_context_load", counting_load)

    def reader(user_id: int) -> None:
        try:
            selectors.user_context_get(user_id=user_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader, args=(m.user_id,)) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(loads) == sorted(m.user_id for m in members)


@pytest.mark.slow
def test_a_crashed_filler_does_not_stall_readers(monkeypatch):
    """A filler that took the lock and died: others wait a bounded time, then load themselves."""
    from cachemgmt import cache

    membership = MembershipFactory()
    first = cache.entry_get(
        selectors.NAMESPACE, selectors.context_entry_ident(membership.user_id)
    )  # takes the fill lock, never fills
    assert isinstance(first, cache.Miss) and first.leader
    context = selectors.user_context_get(user_id=membership.user_id)
    assert context is not None and context.user_id == membership.user_id
