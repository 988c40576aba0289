#!/usr/bin/env bash
# Starts PostgreSQL, Redis and RabbitMQ when they are installed but not running. Idempotent.
set -uo pipefail

wait_until() {  # wait_until SECONDS CMD...
  local limit=$1; shift
  for _ in $(seq 1 $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  wait_until 30 pg_isready -q -h 127.0.0.1 -p 5432 || echo "PostgreSQL did not start" >&2
fi

if command -v redis-server >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  wait_until 15 redis-cli -h 127.0.0.1 -p 6379 ping || echo "Redis did not start" >&2
fi

if command -v rabbitmq-server >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached || true
  wait_until 60 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' || echo "RabbitMQ did not start" >&2
fi
exit 0
