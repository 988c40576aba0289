#!/usr/bin/env bash
# Benchmark of GET /api/me: ./scripts/bench.sh [--quick] [--workers N] [more: python -m bench.run --help]
# Starts real gunicorn sync workers per mode against this machine's PostgreSQL (database
# authctx_bench, recreated) and Redis (database 13, its own key prefix), drives them with wrk,
# and writes bench/results/<timestamp>.{json,md,png} and bench/results/latest.{md,png}.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh requirements-bench.txt

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi

./scripts/services.sh

exec .venv/bin/python -m bench.run "$@"
