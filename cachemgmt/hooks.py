"""Where the apps above plug into the operations layer: readiness checks, statistics, metrics, the sync button.

cachemgmt sits below accounts and zones and never imports them; zones registers its pieces
from ``ZonesConfig.ready()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# name -> (check(now) -> details, uses the database); a check raises ``health.Degraded``.
HealthCheck = Callable[[Callable[[], Any]], dict[str, Any]]
_health_checks: dict[str, tuple[HealthCheck, bool]] = {}
# namespace -> () -> extra fields of that namespace's statistics
_namespace_details: dict[str, Callable[[], dict[str, Any]]] = {}
# (actor, source) -> outcome: the admin Cache page's "run a zone sync" button
_sync_starter: list[Callable[..., dict[str, Any]]] = []
# Prometheus collectors of the apps above, read at scrape time by /metrics
_metrics_collectors: list[Any] = []


def health_check_register(name: str, check: HealthCheck, *, uses_database: bool) -> None:
    _health_checks[name] = (check, uses_database)


def health_checks() -> dict[str, tuple[HealthCheck, bool]]:
    return dict(_health_checks)


def namespace_details_register(namespace: str, details: Callable[[], dict[str, Any]]) -> None:
    _namespace_details[namespace] = details


def namespace_details(namespace: str) -> dict[str, Any]:
    details = _namespace_details.get(namespace)
    return details() if details is not None else {}


def sync_starter_register(start: Callable[..., dict[str, Any]]) -> None:
    _sync_starter[:] = [start]


def sync_starter() -> Callable[..., dict[str, Any]] | None:
    return _sync_starter[0] if _sync_starter else None


def metrics_collector_register(collector: Any) -> None:
    """A ``prometheus_client`` collector whose families /metrics exports (read at scrape time)."""
    if collector not in _metrics_collectors:
        _metrics_collectors.append(collector)


def metrics_collectors() -> list[Any]:
    return list(_metrics_collectors)
