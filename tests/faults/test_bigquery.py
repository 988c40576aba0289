"""BigQuery failing, hanging or answering garbage during syncs under load: the last good zones stay."""

from __future__ import annotations

import time

import pytest

from tests.support.faults import CommittedState, Traffic
from zones import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


def test_bigquery_failing_during_syncs_keeps_the_last_good_zones(postgres, bigquery, webs, hardening_report):
    state = CommittedState(users=10)
    slugs = [org.slug for org in state.organizations]
    bigquery.rows = [(slug, f"{slug.upper()}-Z{j}", f"Zone {j} of {slug}") for slug in slugs for j in range(3)]
    assert services.zone_sync().ok
    good = {slug: [{"code": f"{slug.upper()}-Z{j}", "name": f"Zone {j} of {slug}"} for j in range(3)] for slug in slugs}

    statuses_seen = set()

    def wrong_zones(user_id, context):
        statuses_seen.add((traffic.phase, context["zones_status"]))
        organization = context["organization"]
        expected = good[organization["slug"]] if organization else []
        return context["zones"] != expected or context["zones_status"] not in {"ready", "stale"}

    (web,) = webs(1, workers=2)
    outcomes = {}
    traffic = Traffic(state, [web.port], readers=4, writers=1, check=wrong_zones)
    with traffic:
        traffic.run_for(0.5)
        bigquery.rows = [(slugs[0], "NEW", "Never seen")]  # what a working source would now return
        for mode in ("error500", "slow", "garbage", "malformed", "job_error"):
            traffic.phase = mode
            bigquery.mode, bigquery.delay = mode, 3.0
            started = time.monotonic()
            outcome = services.zone_sync()
            outcomes[mode] = (outcome.status, outcome.failure, round(time.monotonic() - started, 2))
            traffic.run_for(0.3)
        traffic.phase = "after"
        traffic.run_for(0.5)
    tally = traffic.stop()
    hardening_report(**tally.figures(), syncs=outcomes)
    assert ("before", "ready") in statuses_seen and ("after", "stale") in statuses_seen, statuses_seen
    assert ("after", "ready") not in statuses_seen  # a failed sync turns every context stale at once
    assert all(status == "failed" and failure == "source" for status, failure, _ in outcomes.values()), outcomes
    assert outcomes["slow"][2] < 5.0  # the hang is cut by BIGQUERY_TIMEOUT, not waited out
    assert tally.failed == 0 and tally.stale == 0, tally.samples
    assert set(tally.statuses) == {200}
