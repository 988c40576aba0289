"""Where the tests run and which services they have: the repository root, CI, PostgreSQL and Redis."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
CI = os.environ.get("CI", "").lower() == "true"


def service_missing(reason: str) -> None:
    """A test whose service is unreachable fails under CI=true and is skipped elsewhere."""
    if CI:
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


def uses_postgres() -> bool:
    return connection.vendor == "postgresql"


def uses_redis() -> bool:
    return bool(settings.CACHES.get("default", {}).get("BACKEND") == "django_redis.cache.RedisCache")


def clear_project_keys() -> None:
    """Empty the project's cache: its keys in the test Redis, or the in-process cache."""
    if uses_redis():
        from django_redis import get_redis_connection

        client = get_redis_connection("default")
        try:
            keys = list(client.scan_iter(match=f"{settings.CACHEMGMT['KEY_PREFIX']}*", count=1000))
        except Exception as exc:  # the test Redis must be there
            service_missing(f"Redis unreachable: {exc}")
            return
        if keys:
            client.delete(*keys)
    else:
        from django.core.cache import caches

        caches["default"].clear()
