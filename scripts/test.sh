#!/usr/bin/env bash
# The whole test suite: lint and types, then pytest against the real PostgreSQL and Redis,
# then the database-independent tests again on the embedded defaults (SQLite, in-process cache).
# SOAK_SECONDS=120 ./scripts/test.sh makes the concurrency soak in tests/faults run 120 s (default 8).
# ./scripts/test.sh --fast (make test-fast) is the inner loop: no lint or Django checks, only the
# PostgreSQL + Redis pass, without the tests marked slow (servers started, real time waited on).
# Any other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

FAST=0
if [ "${1:-}" = "--fast" ]; then FAST=1; shift; fi

./scripts/bootstrap.sh requirements-dev.txt
. .venv/bin/activate
export SECRET_KEY=${SECRET_KEY:-test-secret-key-not-for-production-0123456789abcdef}

if [ "$FAST" = 0 ]; then
  echo "== lint and types"
  ruff check .
  ruff format --check .
  mypy .
fi

if [ "${1:-}" = "--lint-only" ]; then exit 0; fi

./scripts/services.sh

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here), the
# pooler tests Debian's PgBouncer (started by the tests themselves); both are slow tests.
if [ "$FAST" = 0 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/sbin/pgbouncer ]; }; then
  apt-get update -qq || true
fi
if [ "$FAST" = 0 ] && [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (browser tests)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "chromium could not be installed: browser tests will fail under CI=true" >&2
fi
if [ "$FAST" = 0 ] && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "installing pgbouncer (pooler tests; the tests start their own)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null \
    || echo "pgbouncer could not be installed: pooler tests will fail under CI=true" >&2
fi

PG_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/authctx}
REDIS_TEST_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/9}

# The checks below connect to the project database itself (pytest creates test_<name>).
python - "$PG_URL" <<'PY'
import sys
from urllib.parse import urlparse

import psycopg

url = urlparse(sys.argv[1])
with psycopg.connect(host=url.hostname, port=url.port or 5432, user=url.username or "postgres",
                     password=url.password, dbname="postgres", autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [url.path.lstrip("/")]).fetchone():
        conn.execute(f'CREATE DATABASE "{url.path.lstrip("/")}"')
PY

if [ "$FAST" = 1 ]; then
  echo "== pytest: PostgreSQL + Redis, not slow"
  DATABASE_URL=$PG_URL REDIS_URL=$REDIS_TEST_URL python -m pytest -q -m "not slow" "${@}"
  exit 0
fi

echo "== django checks"
DATABASE_URL=$PG_URL python manage.py check --fail-level WARNING
DATABASE_URL=$PG_URL python manage.py makemigrations --check --dry-run
DATABASE_URL=$PG_URL python manage.py spectacular --validate --fail-on-warn --file /dev/null

echo "== pytest: PostgreSQL + Redis"
DATABASE_URL=$PG_URL REDIS_URL=$REDIS_TEST_URL python -m pytest -q "${@}"

echo "== pytest: SQLite + in-process cache (database-independent tests)"
env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL DATABASE_URL=sqlite:///:memory: \
  python -m pytest -q -m "not services" "${@}"
