"""Settings for every process; all configuration comes from the environment (see README)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dj_database_url

from cachemgmt.cache.failover import NO_RETRY
from cachemgmt.conf import DEFAULTS as cache_defaults
from project.env import (
    EnvError,
    env_bool,
    env_choice,
    env_hostports,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_signing_keys,
    env_str,
    env_url,
)
from project.logging import FORMATTER_CONFIG

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "dev-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105 - DEBUG only, with a warning
SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise EnvError("SECRET_KEY: required when DEBUG=0")
    warnings.warn("SECRET_KEY is not set: using the development key", stacklevel=1)
    SECRET_KEY = _DEV_SECRET_KEY
# Old keys that still verify what they signed (Django's sessions and signing; the access
# tokens' derived key when TOKEN_SIGNING_KEYS is unset): rotate by moving SECRET_KEY here.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", "")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
    "accounts",
    "zones",
    "cachemgmt",
]

MIDDLEWARE = [
    "cachemgmt.middleware.RequestLogMiddleware",
    # Browser apps on other origins (CORS_ALLOWED_ORIGINS): preflights answered here, first.
    "project.middleware.CorsMiddleware",
    "project.limits.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Sessions, the session user, messages and CSRF serve the admin and the staff endpoints'
    # session login; under WSGI bearer-token API calls go through a chain without them
    # (project.handler), elsewhere the first three step aside on such calls.
    "project.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "project.middleware.BrowserAuthenticationMiddleware",
    "project.middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Overrides of installed apps' templates (the documentation pages without web fonts).
        "DIRS": [BASE_DIR / "project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL", ("sqlite", "postgres", "postgresql"), default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
)
DB_MAX_CONNECTIONS = env_int("DB_MAX_CONNECTIONS", 20, minimum=1, maximum=1000)
DB_POOLER = env_choice("DB_POOLER", "none", ("none", "transaction"))
# What needs a session of its own (LISTEN) connects here: the server itself, not the pooler.
DATABASE_DIRECT_URL = env_url("DATABASE_DIRECT_URL", ("postgres", "postgresql"))
DATABASE_DIRECT = dj_database_url.parse(DATABASE_DIRECT_URL) if DATABASE_DIRECT_URL else None
if DB_POOLER == "transaction" and DATABASE_DIRECT is None:
    # LISTEN through a transaction-mode pooler is accepted and then never notified.
    raise EnvError("DATABASE_DIRECT_URL: required with DB_POOLER=transaction (the change carrier LISTENs there)")
_db = dj_database_url.parse(DATABASE_URL or "")
if _db["ENGINE"] == "django.db.backends.postgresql":
    # psycopg 3's pool: one per process; CONN_MAX_AGE must stay 0 with it.
    _db["CONN_MAX_AGE"] = 0
    _db["OPTIONS"] = {
        "pool": {
            "min_size": min(2, DB_MAX_CONNECTIONS),
            "max_size": DB_MAX_CONNECTIONS,
            "timeout": float(env_int("DB_POOL_TIMEOUT", 5, minimum=1)),
            "max_idle": 300,
        },
        "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 3, minimum=1),
    }
    if DB_POOLER == "transaction":
        # Behind PgBouncer in transaction mode a session is not ours between transactions: no
        # prepared statements (psycopg's automatic ones; Django's default, made explicit), no
        # server-side cursors (they outlive a transaction). Session features (the carrier's
        # LISTEN) take DATABASE_DIRECT_URL; the zone sync's lock is transaction-level already.
        _db["OPTIONS"]["prepare_threshold"] = None
        _db["DISABLE_SERVER_SIDE_CURSORS"] = True
else:
    # IMMEDIATE: a transaction takes the write lock when it begins, so two writers queue (up to
    # the timeout) instead of one failing when it upgrades a read to a write.
    _db["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
# Redis behind Sentinel: used instead of REDIS_URL for the cache, the near cache, locks,
# throttles and (without CELERY_BROKER_URL) the broker; a failover needs no restart.
REDIS_SENTINELS = env_hostports("REDIS_SENTINELS")
REDIS_SENTINEL_SERVICE = env_str("REDIS_SENTINEL_SERVICE", "mymaster") or "mymaster"
REDIS_SENTINEL_DB = env_int("REDIS_SENTINEL_DB", 0, minimum=0, maximum=15)
# Behind Sentinel: the Redis servers' password (with REDIS_URL it is part of the URL), and the
# Sentinels' own (requirepass on the Sentinels), when they have one.
REDIS_PASSWORD = env_str("REDIS_PASSWORD")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD")
if REDIS_SENTINELS:
    REDIS_URL = None
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 50, minimum=1, maximum=10_000)
# The cache's own settings (cachemgmt.conf documents each and holds its default).
CACHEMGMT: dict[str, Any] = {
    "KEY_PREFIX": env_str("CACHE_KEY_PREFIX") or cache_defaults["KEY_PREFIX"],
    "REDIS_SOCKET_TIMEOUT_MS": env_int(
        "REDIS_SOCKET_TIMEOUT_MS", cache_defaults["REDIS_SOCKET_TIMEOUT_MS"], minimum=10, maximum=10_000
    ),
    # The fault tests shorten it.
    "BREAKER_COOLDOWN_MS": env_int(
        "CACHE_BREAKER_COOLDOWN_MS", cache_defaults["BREAKER_COOLDOWN_MS"], minimum=100, maximum=600_000
    ),
    "NEAR_MAX_ENTRIES": env_int(
        "CACHE_NEAR_MAX_ENTRIES", cache_defaults["NEAR_MAX_ENTRIES"], minimum=0, maximum=10_000_000
    ),
}
_redis_timeout = CACHEMGMT["REDIS_SOCKET_TIMEOUT_MS"] / 1000
_redis_options: dict[str, Any] = {
    # One server (the primary) for reads and writes: never a replica's older data.
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "SOCKET_CONNECT_TIMEOUT": _redis_timeout,
    "SOCKET_TIMEOUT": _redis_timeout,
    "CONNECTION_POOL_KWARGS": {
        "max_connections": REDIS_MAX_CONNECTIONS,
        "retry_on_timeout": False,
        "health_check_interval": 30,
    },
}
if REDIS_SENTINELS:
    _redis_options.update(
        {
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            # Fences the old primary and clears what the new one may lack (cachemgmt.cache.failover).
            "CONNECTION_POOL_CLASS": "cachemgmt.cache.failover.FencedSentinelConnectionPool",
            "SENTINELS": REDIS_SENTINELS,
            # No retries with backoff (redis-py's default, seconds): a request may be waiting.
            "SENTINEL_KWARGS": {
                "socket_timeout": _redis_timeout,
                "socket_connect_timeout": _redis_timeout,
                "retry": NO_RETRY,
                "password": REDIS_SENTINEL_PASSWORD,
            },
            "PASSWORD": REDIS_PASSWORD,
        }
    )
if REDIS_URL or REDIS_SENTINELS:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            # Behind Sentinel the host part names the service, not a server.
            "LOCATION": REDIS_URL or f"redis://{REDIS_SENTINEL_SERVICE}/{REDIS_SENTINEL_DB}",
            "KEY_PREFIX": CACHEMGMT["KEY_PREFIX"],
            "OPTIONS": _redis_options,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "authctx-default",
            "KEY_PREFIX": CACHEMGMT["KEY_PREFIX"],
        }
    }

# --- Project apps ---------------------------------------------------------------------
ACCOUNTS = {
    "USER_CONTEXT_TTL": env_int("USER_CONTEXT_TTL", 900, minimum=1),
    "ACCESS_TOKEN_TTL": env_int("ACCESS_TOKEN_TTL", 900, minimum=60),
    "REFRESH_TOKEN_TTL": env_int("REFRESH_TOKEN_TTL", 2_592_000, minimum=300),
    "REFRESH_TOKEN_MAX_AGE": env_int("REFRESH_TOKEN_MAX_AGE", 7_776_000, minimum=300),
    "REFRESH_REUSE_LEEWAY": env_int("REFRESH_REUSE_LEEWAY", 5, minimum=0, maximum=10),
    "SESSIONS_PER_USER": env_int("SESSIONS_PER_USER", 20, minimum=1, maximum=1000),
    "REFRESH_FAILURES_PER_ADDRESS": env_int("REFRESH_FAILURES_PER_ADDRESS", 100, minimum=1),
    "TOKEN_SIGNING_KEYS": env_signing_keys("TOKEN_SIGNING_KEYS"),
    # Behind a load balancer every REMOTE_ADDR is the balancer's: without this, one address
    # counter (20 failures) would throttle every client's logins at once.
    "TRUSTED_PROXY_COUNT": env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10),
}
ZONE_SYNC_INTERVAL = env_int("ZONE_SYNC_INTERVAL", 21600, minimum=1)  # seconds; tests run beat every few
ZONES = {
    "SOURCE": env_choice("ZONE_SOURCE", "fixture", ("fixture", "bigquery")),
    "CACHE_TTL": env_int("ZONE_CACHE_TTL", 86400, minimum=1),
    "SYNC_INTERVAL": ZONE_SYNC_INTERVAL,
    "BIGQUERY_PROJECT": env_str("BIGQUERY_PROJECT"),
    "BIGQUERY_ZONE_TABLE": env_str("BIGQUERY_ZONE_TABLE"),
    "BIGQUERY_API_ENDPOINT": env_url("BIGQUERY_API_ENDPOINT", ("http", "https")),
}

# --- CORS (django-cors-headers): the API only, no origin unless listed ----------------
_cors_origins = env_origins("CORS_ALLOWED_ORIGINS")
CORS_ALLOW_ALL_ORIGINS = _cors_origins == ["*"]
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else _cors_origins
# Bearer tokens need no cookies: credentials are never allowed, for "*" or any origin.
CORS_ALLOW_CREDENTIALS = False
CORS_URLS_REGEX = r"^/(api/|health)"
CORS_EXPOSE_HEADERS = ["Retry-After", "WWW-Authenticate"]

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", ("redis", "rediss", "amqp", "amqps"), default=REDIS_URL)
if CELERY_BROKER_URL is None and REDIS_SENTINELS:
    # kombu's Sentinel transport: the same primary as the cache, found through the Sentinels.
    _auth = f":{quote(REDIS_PASSWORD, safe='')}@" if REDIS_PASSWORD else ""
    CELERY_BROKER_URL = ";".join(
        f"sentinel://{_auth}{host}:{port}/{REDIS_SENTINEL_DB}" for host, port in REDIS_SENTINELS
    )
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"master_name": REDIS_SENTINEL_SERVICE}
    if REDIS_SENTINEL_PASSWORD:
        CELERY_BROKER_TRANSPORT_OPTIONS["sentinel_kwargs"] = {"password": REDIS_SENTINEL_PASSWORD}
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_IGNORE_RESULT = True
# Every worker and beat may enqueue it; the task's lock lets one sync run at a time. A sync
# not started within an interval is dropped: the next one supersedes it.
CELERY_BEAT_SCHEDULE = {
    "zones-sync": {
        "task": "zones.tasks.zone_sync_task",
        "schedule": float(ZONE_SYNC_INTERVAL),
        # One sync per interval even with two beats running (zones.services.zone_sync_scheduled).
        "kwargs": {"scheduled": True},
        "options": {"expires": float(ZONE_SYNC_INTERVAL)},
    },
    # Sessions whose refresh token expired are deleted (history kept until then).
    "sessions-prune": {
        "task": "accounts.tasks.sessions_prune_task",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}

# --- Auth -----------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.ContextModelBackend"]
# The first hashes new passwords; the others still check existing hashes, which are rehashed
# with the first at the next successful login.
PASSWORD_HASHERS = [
    "accounts.hashers.Argon2idHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ContextTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["project.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "project.negotiation.JSONFirstNegotiation",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "project.errors.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "authctx API",
    "DESCRIPTION": "Bearer-token APIs with a cached user context, and operator endpoints.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema is public: a stale or revoked token sent along must not turn it into a 401.
    "SERVE_AUTHENTICATION": [],
    # Every operation also documents the answers any request may get (503, 406, 413, 415).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "project.schema.add_common_errors",
    ],
    # Operations grouped by what follows /api/ (auth, admin, me, ...).
    "SCHEMA_PATH_PREFIX": r"/api/",
    # Swagger UI and Redoc from the installed sidecar package, served as static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Swagger UI keeps the bearer token across reloads of the page.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
}

# Bodies larger than this are refused with 413 before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BODY", 64 * 1024, minimum=1024)
# JSON bodies nested deeper than this are refused with 400 before parsing (no API body nests
# past a few levels; Python's parser recurses once per level).
JSON_MAX_DEPTH = 32

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Logging --------------------------------------------------------------------------
LOG_FORMAT = env_choice("LOG_FORMAT", "console" if DEBUG else "json", ("json", "console"))
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": FORMATTER_CONFIG},
    "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["default"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        # Connection failures are reported once by whoever needed the connection (a 503, the
        # health check, a command's one line), not once per attempt of the pool's workers.
        "psycopg.pool": {"level": "ERROR"},
        # The access log line (cachemgmt.middleware) is the one line per request, 4xx and 5xx
        # included, a 5xx with its traceback: Django's own second line is not written.
        "django.request": {"level": "CRITICAL", "propagate": True},
    },
}

# --- Metrics ----------------------------------------------------------------------------
# /metrics answers the addresses listed here (matched against the connecting address, never a
# forwarded one) and any request bearing METRICS_TOKEN; open to all in the demo, to none by
# default in production.
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS", "*" if DEBUG else "")
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Production hardening (active when DEBUG=0) ------------------------------------------
if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    SESSION_COOKIE_HTTPONLY = True
    SECURE_REFERRER_POLICY = "same-origin"
# On by default in production: plain-HTTP deployments (a private network, the benchmark) say
# SECURE_COOKIES=0 explicitly.
if env_bool("SECURE_COOKIES", not DEBUG):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
