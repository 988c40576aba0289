"""Writers change roles, memberships and profiles while readers on two web processes (two workers
each) check every answer against what was committed before the request was sent.

``SOAK_SECONDS`` sets the length (default 8 s); ``SOAK_SECONDS=120 make test`` is the long run.
"""

from __future__ import annotations

import pytest

from tests.support.faults import CommittedState, Traffic, soak_seconds

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.mark.timeout(int(soak_seconds(8.0)) + 180)  # a long soak is not cut by the suite's 300 s per test
def test_readers_never_see_a_context_older_than_the_last_commit(postgres, webs, hardening_report):
    seconds = soak_seconds(8.0)
    state = CommittedState(users=16, organizations=3, roles=4, prefix="soak")
    servers = webs(2, workers=2)
    with Traffic(
        state,
        [web.port for web in servers],
        readers=6,
        writers=2,
        write_kinds=("profile", "membership", "membership", "role"),
        write_pause=0.005,
        max_seconds=seconds + 30,
        max_requests=2_000_000,
    ) as traffic:
        traffic.phase = "soak"
        traffic.run_for(seconds)
    tally = traffic.stop()
    hardening_report(
        **tally.figures(),
        seconds=seconds,
        processes=f"{len(servers)} gunicorn x 2 workers + this one (6 readers, 2 writers)",
        writes_by_kind=dict(state.counts),
    )
    assert tally.failed == 0, tally.samples
    assert tally.stale == 0, tally.samples
    assert tally.write_errors == 0, tally.samples
    assert all(state.counts[kind] > 0 for kind in ("profile", "membership", "role")), state.counts
