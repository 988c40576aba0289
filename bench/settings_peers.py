"""Benchmark-only settings: the project's settings, plus the peer designs' apps for one mode.

``BENCH_MODE`` picks the mode served by this process (see ``bench.urls_peers``):

* ``floor``: an anonymous DRF view returning a fixed context-sized payload;
* ``naive``: DRF's stock ``TokenAuthentication`` and plain ORM calls per request;
* ``cachalot``: ``naive`` with django-cachalot caching its queries in Redis;
* ``simplejwt``: djangorestframework-simplejwt's stock ``JWTAuthentication``, then the context the
  way a DRF app typically builds it (``select_related`` / ``prefetch_related``);
* ``knox``: django-rest-knox's ``TokenAuthentication``, then the same typical context;
* ``simplejwt-tuned``: simplejwt with one hand-written query building the context;
* ``seed-ttl``: the design this project grew from: the signed token decoded, the context cached
  in-process for 15 minutes by user id, no invalidation;
* ``ours-local`` / ``ours-redis``: the project itself (the cache is chosen by ``REDIS_URL``);
* ``ours-redis-direct``: the project on Redis with its near cache off (``CACHE_NEAR_MAX_ENTRIES=0``).

Nothing here is imported by the product.
"""

import os

from bench import config as _bench_config
from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS, SECRET_KEY

BENCH_MODE = os.environ.get("BENCH_MODE", "ours-local")
BENCH_MODES = tuple(
    m for m in _bench_config.MODES if m not in _bench_config.WSGI_MODULE
)  # bare is a project of its own
if BENCH_MODE not in BENCH_MODES:
    raise SystemExit(f"BENCH_MODE: expected one of {', '.join(BENCH_MODES)}, got {BENCH_MODE!r}")

ROOT_URLCONF = "bench.urls_peers"

# The peers authenticate with Django's stock backend (the project's backend warms its own cache).
if BENCH_MODE in ("naive", "cachalot", "simplejwt", "simplejwt-tuned", "knox", "seed-ttl"):
    AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]

# The authtoken table exists in every mode's database (migrations run with it installed).
if BENCH_MODE in ("naive", "cachalot") or os.environ.get("BENCH_ALL_APPS") == "1":
    INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework.authtoken"]

if BENCH_MODE in ("simplejwt", "simplejwt-tuned"):
    INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework_simplejwt"]

# knox's token table exists in every mode's database too.
if BENCH_MODE == "knox" or os.environ.get("BENCH_ALL_APPS") == "1":
    INSTALLED_APPS = [*INSTALLED_APPS, "knox"]
REST_KNOX = {"TOKEN_TTL": __import__("datetime").timedelta(days=1), "AUTO_REFRESH": False}

SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "ACCESS_TOKEN_LIFETIME": __import__("datetime").timedelta(days=1),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

if BENCH_MODE == "cachalot":
    INSTALLED_APPS = [*INSTALLED_APPS, "cachalot"]
    CACHALOT_CACHE = "default"  # Redis: REDIS_URL is set for this mode
    CACHALOT_TIMEOUT = 3600
    CACHALOT_UNCACHABLE_TABLES = frozenset(("django_migrations",))
