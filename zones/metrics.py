"""Prometheus metrics of the zones app: syncs by outcome, counted from their records at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from zones.selectors import zone_sync_counts

logger = logging.getLogger("zones")


class ZoneSyncCollector(Collector):
    """``authctx_zone_syncs_total{outcome}``: every recorded sync, whichever process ran it."""

    def collect(self) -> Iterator[Metric]:
        try:
            counts = zone_sync_counts()
        except DatabaseError:  # the scrape still answers; /health says why
            logger.warning("zone sync counts unavailable for metrics")
            return
        family = CounterMetricFamily("authctx_zone_syncs", "Zone syncs recorded, by outcome.", labels=["outcome"])
        for outcome in ("ok", "failed", "running"):
            family.add_metric([outcome], counts.get(outcome, 0))
        yield family
