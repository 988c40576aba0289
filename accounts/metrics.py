"""Prometheus counters of the accounts app: logins and refreshes by outcome (one per answer)."""

from __future__ import annotations

from prometheus_client import Counter

# Exported as authctx_logins_total{outcome} and authctx_refreshes_total{outcome}; with
# PROMETHEUS_MULTIPROC_DIR every worker's counts are summed at scrape time.
LOGINS = Counter("authctx_logins", "API logins by outcome.", ["outcome"])
REFRESHES = Counter("authctx_refreshes", "Refresh token exchanges by outcome.", ["outcome"])
