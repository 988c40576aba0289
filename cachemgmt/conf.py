"""Settings of the cache: ``settings.CACHEMGMT`` over these defaults."""

from typing import Any

from project.appsettings import AppSettings

# project/settings.py sets each from its environment variable, falling back to these.
DEFAULTS: dict[str, Any] = {
    # Every key the cache writes starts with it; the project gives it to Django's cache too
    # (env CACHE_KEY_PREFIX).
    "KEY_PREFIX": "authctx",
    # Copies each process keeps in its near cache in front of Redis; 0 turns it off
    # (env CACHE_NEAR_MAX_ENTRIES).
    "NEAR_MAX_ENTRIES": 10_000,
    # How long the circuit stays open before one probe is let through, ms
    # (env CACHE_BREAKER_COOLDOWN_MS).
    "BREAKER_COOLDOWN_MS": 5000,
    # Redis connect and read timeout, ms: the project's CACHES use it, and the cache reads it
    # when CACHES gives none; a near-cache lease lasts half of it (env REDIS_SOCKET_TIMEOUT_MS).
    "REDIS_SOCKET_TIMEOUT_MS": 250,
}

cachemgmt_settings = AppSettings("CACHEMGMT", DEFAULTS)
