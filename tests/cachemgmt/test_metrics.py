"""Prometheus metrics: request latency by method, view and status; cache counters; syncs and logins by outcome."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cachemgmt import cache
from tests.factories import UserFactory


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.content.decode())}


def sample_value(samples, name: str, **labels: str) -> float:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.django_db(transaction=True)
def test_metrics_count_requests_by_view_and_status_and_cache_lookups_by_namespace(client, bearer):
    user = UserFactory()
    before = scrape(client)
    me_before = (
        sample_value(
            before["http_request_duration_seconds"], "http_request_duration_seconds_count", view="me", status="200"
        )
        if any(s.labels.get("view") == "me" for s in before.get("http_request_duration_seconds", []))
        else 0
    )

    client.get("/api/me", **bearer(user))
    client.get("/api/me", **bearer(user))
    client.get("/api/me")  # 401

    families = scrape(client)
    latency = families["http_request_duration_seconds"]
    assert sample_value(latency, "http_request_duration_seconds_count", view="me", status="200") == me_before + 2
    assert sample_value(latency, "http_request_duration_seconds_count", view="me", status="401") >= 1
    assert any(s.name == "http_request_duration_seconds_bucket" and s.labels["le"] == "0.005" for s in latency)
    expected = cache.stats_read("user_context")
    assert sample_value(families["authctx_cache_hits"], "authctx_cache_hits_total", namespace="user_context") == (
        expected.get("hits", 0)
    )
    assert sample_value(families["authctx_cache_misses"], "authctx_cache_misses_total", namespace="user_context") >= 1
    assert sample_value(families["authctx_cache_hits"], "authctx_cache_hits_total", namespace="zones") >= 0
    assert sample_value(families["authctx_cache_up"], "authctx_cache_up") == 1


@pytest.mark.django_db  # a scrape counts zone syncs in the database
def test_metrics_label_unmatched_paths_without_the_path_itself(client):
    client.get("/no/such/path/12345")
    text = client.get("/metrics").content.decode()
    assert 'view="unmatched"' in text
    assert "12345" not in text


@pytest.mark.django_db
def test_metrics_refuse_writes(client):
    assert client.post("/metrics").status_code == 405
    assert re.search(r"^# TYPE http_request_duration_seconds histogram$", client.get("/metrics").content.decode(), re.M)


@pytest.mark.django_db(transaction=True)
def test_requests_are_labelled_by_method_and_odd_methods_share_one_label(client):
    client.generic("BREW", "/api/me")
    client.options("/api/me")
    latency = scrape(client)["http_request_duration_seconds"]
    assert sample_value(latency, "http_request_duration_seconds_count", method="OPTIONS", view="me") >= 1
    assert sample_value(latency, "http_request_duration_seconds_count", method="other", view="me") >= 1
    assert not any(s.labels.get("method") == "BREW" for s in latency)


@pytest.mark.django_db
def test_each_observation_lands_once_and_odd_methods_do_not_grow_the_label_cache():
    from prometheus_client import REGISTRY

    from cachemgmt import metrics

    def count(method: str) -> float:
        labels = {"method": method, "view": "me", "status": "405"}
        return REGISTRY.get_sample_value("http_request_duration_seconds_count", labels) or 0.0

    before = count("other")
    for index in range(50):
        metrics.request_observe(method=f"M{index}", view="me", status=405, seconds=0.001)
    assert count("other") == before + 50
    assert len([k for k in metrics._children if k[0] not in metrics._METHODS]) <= 1


@pytest.mark.django_db(transaction=True)
def test_near_cache_hits_zone_syncs_and_logins_are_counted(client, settings):
    from django.utils import timezone
    from rest_framework.test import APIClient

    from tests.factories import PASSWORD
    from zones.models import ZoneSyncRun

    now = timezone.now()
    ZoneSyncRun.objects.create(started_at=now, finished_at=now, source="fixture", status="ok")
    ZoneSyncRun.objects.create(started_at=now, finished_at=now, source="fixture", status="failed", error="x")
    user = UserFactory()
    api = APIClient()
    before = scrape(client)

    def logins(samples, outcome: str) -> float:
        try:
            return sample_value(samples, "authctx_logins_total", outcome=outcome)
        except AssertionError:
            return 0.0

    succeeded = logins(before.get("authctx_logins", []), "succeeded")
    failed = logins(before.get("authctx_logins", []), "failed")
    assert (
        api.post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json").status_code == 200
    )
    assert (
        api.post("/api/auth/login", {"username": user.username, "password": "wrong"}, format="json").status_code == 401
    )

    families = scrape(client)
    assert logins(families["authctx_logins"], "succeeded") == succeeded + 1
    assert logins(families["authctx_logins"], "failed") == failed + 1
    syncs = families["authctx_zone_syncs"]
    assert sample_value(syncs, "authctx_zone_syncs_total", outcome="ok") == 1
    assert sample_value(syncs, "authctx_zone_syncs_total", outcome="failed") == 1
    near = families["authctx_cache_near_hits"]
    assert sample_value(near, "authctx_cache_near_hits_total", namespace="user_context") == cache.stats_read(
        "user_context"
    ).get("near_hits", 0)
