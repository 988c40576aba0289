"""Prometheus metrics of the zones app: syncs by outcome, counted from their records at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zones.selectors import zone_sync_counts

logger = logging.getLogger("zones")


class ZoneSyncCollector(Collector):
    """``authctx_zone_syncs_total{outcome}`` (finished syncs) and ``authctx_zone_syncs_running``,
    from the records, whichever process ran them."""

    def collect(self) -> Iterator[Metric]:
        try:
            counts = zone_sync_counts()
        except DatabaseError:  # the scrape still answers; /health says why
            logger.warning("zone sync counts unavailable for metrics")
            return
        family = CounterMetricFamily("authctx_zone_syncs", "Zone syncs finished, by outcome.", labels=["outcome"])
        for outcome in ("ok", "failed"):
            family.add_metric([outcome], counts.get(outcome, 0))
        running = GaugeMetricFamily("authctx_zone_syncs_running", "Zone syncs running now.")
        running.add_metric([], counts.get("running", 0))
        yield from (family, running)
