"""Settings of the zones app: ``settings.ZONES`` over these defaults."""

from project.appsettings import AppSettings

DEFAULTS = {
    "SOURCE": "fixture",  # "fixture" (bundled sample) or "bigquery"
    "CACHE_TTL": 86400,  # seconds an organization's zones stay cached
    "SYNC_INTERVAL": 21600,  # seconds between scheduled syncs
    "BIGQUERY_PROJECT": None,
    "BIGQUERY_ZONE_TABLE": None,
    "BIGQUERY_API_ENDPOINT": None,
    # Seconds one BigQuery call (with the client's own retries) may take before the sync fails.
    "BIGQUERY_TIMEOUT": 30.0,
    "BIGQUERY_PAGE_SIZE": 10000,
    # A sync fails (keeping the previous snapshot) when more than this share of rows is bad.
    "MAX_BAD_ROW_SHARE": 0.1,
    # Seconds the sync lock lives if its holder dies without releasing it; longer than any sync.
    "SYNC_LOCK_TTL": 900,
}

zones_settings = AppSettings("ZONES", DEFAULTS)
