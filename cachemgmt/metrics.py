"""Prometheus metrics: request latency by view and status, and the shared cache counters.

Request latency is observed in-process (one histogram observation per request). Cache
counters are read from the shared store at scrape time, so they already cover every
process and cost the request path nothing. Under gunicorn with several workers set
``PROMETHEUS_MULTIPROC_DIR`` (see README) so every worker's histogram is aggregated.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cachemgmt import cache, hooks
from cachemgmt.selectors import carrier_report

logger = logging.getLogger("cachemgmt.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time spent answering HTTP requests, by method, view and status.",
    ["method", "view", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_COUNTERS = (
    ("hits", "Context and zone lookups served from the cache."),
    ("misses", "Lookups that went to the database."),
    ("fills", "Entries stored after a miss."),
    ("invalidations", "Dependency bumps (each defeats every entry built from that dependency)."),
    ("near_hits", "Hits served from a process's near cache, without a Redis round trip."),
)


# Methods a client may send are unbounded: others share one label value.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# The histogram's children by label values (bounded: methods, views and statuses are few), so a
# request skips ``labels()``'s validation and locking.
_children: dict[tuple[str, str, int], Any] = {}


def request_observe(*, method: str, view: str, status: int, seconds: float) -> None:
    key = (method if method in _METHODS else "other", view, status)
    child = _children.get(key)
    if child is None:
        child = _children[key] = REQUEST_LATENCY.labels(key[0], view, str(status))
    child.observe(seconds)


class CacheStatsCollector(Collector):
    """The shared cache counters per namespace, read when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        families = {
            name: CounterMetricFamily(f"authctx_cache_{name}", help_text, labels=["namespace"])
            for name, help_text in _COUNTERS
        }
        up = GaugeMetricFamily("authctx_cache_up", "1 when the shared cache counters could be read.")
        try:
            for namespace in cache.NAMESPACES:
                counters = cache.stats_read(namespace)
                for name, family in families.items():
                    family.add_metric([namespace], counters.get(name, 0))
        except cache.CacheUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from families.values()
        yield up


class CarrierCollector(Collector):
    """The carrier's lag and whether this process serves cached contexts, read when scraped."""

    def collect(self) -> Iterator[Metric]:
        report = carrier_report(count_pending=False)  # no query at scrape time
        lag = GaugeMetricFamily(
            "authctx_carrier_lag_seconds", "Age of the carrier's last pass that left nothing pending (-1: none yet)."
        )
        lag.add_metric([], report["lag_seconds"] if report["lag_seconds"] is not None else -1)
        trusted = GaugeMetricFamily("authctx_carrier_trusted", "1 while this process serves cached contexts.")
        trusted.add_metric([], 1 if report["trusted"] else 0)
        yield from (lag, trusted)


_cache_collector = CacheStatsCollector()
REGISTRY.register(_cache_collector)
_carrier_collector = CarrierCollector()
REGISTRY.register(_carrier_collector)


_registered_hooks: set[int] = set()


def _registry() -> Any:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_cache_collector)
        registry.register(_carrier_collector)
        for collector in hooks.metrics_collectors():
            registry.register(collector)
        return registry
    for collector in hooks.metrics_collectors():
        if id(collector) not in _registered_hooks:
            REGISTRY.register(collector)
            _registered_hooks.add(id(collector))
    return REGISTRY


@functools.lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed if item != "*")


def metrics_allowed(request: HttpRequest) -> bool:
    """``METRICS_TOKEN`` as a bearer token, or a connecting address in ``METRICS_ALLOWED_IPS``."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header[:7].lower() == "bearer " and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    allowed = tuple(settings.METRICS_ALLOWED_IPS)
    if "*" in allowed:
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _networks(allowed))


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            {"detail": "Metrics are restricted (METRICS_ALLOWED_IPS, METRICS_TOKEN).", "code": "permission_denied"},
            status=403,
        )
    if request.method not in {"GET", "HEAD"}:
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE)
