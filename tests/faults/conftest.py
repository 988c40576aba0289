"""Fixtures of the fault tests: servers of the test's own (web, Redis, broker, Celery) to break and restart."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cachemgmt import cache
from tests.support.faults import warm_up
from tests.support.processes import RedisServer, WebProcess, free_port, process_env, spawn_gunicorn, use_redis_server

# Gunicorn workers of these tests probe a broken cache after this long (the default is 5 s).
BREAKER_COOLDOWN_MS = 1000


@pytest.fixture
def own_redis(redis_server: RedisServer, settings: Any) -> Iterator[RedisServer]:
    """This process's cache on a Redis server of the test's own, with the web processes' breaker."""
    use_redis_server(settings, redis_server, timeout=0.25, max_connections=50)
    settings.CACHEMGMT = {**settings.CACHEMGMT, "BREAKER_COOLDOWN_MS": BREAKER_COOLDOWN_MS}
    cache.reset_store()
    yield redis_server
    cache.reset_store()


@pytest.fixture
def spare_redis() -> Iterator[Callable[..., RedisServer]]:
    """More Redis servers (a broker, ...); ``persistent=True`` keeps data across a ``shutdown`` and ``start``."""
    servers: list[RedisServer] = []

    def make(*, persistent: bool = False) -> RedisServer:
        server = RedisServer.started(prefix="redis-fault-", persistent=persistent)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.remove()


@pytest.fixture
def webs(tmp_path: Path, spare_redis: Callable[..., RedisServer]) -> Iterator[Callable[..., list[WebProcess]]]:
    """``webs(n, workers=2, **env)``: n gunicorn processes started together (then waited for).

    Unless the test names one, they get a broker of their own: syncs their requests ask for
    (a missing or overdue zones snapshot) must not wait in a queue other tests' workers read.
    """
    started: list[WebProcess] = []

    def start(n: int = 1, *, workers: int = 2, **env_overrides: str) -> list[WebProcess]:
        if "CELERY_BROKER_URL" not in env_overrides:
            env_overrides["CELERY_BROKER_URL"] = spare_redis().url
        batch: list[WebProcess] = []
        for _ in range(n):
            port = free_port()
            env = process_env(CACHE_BREAKER_COOLDOWN_MS=str(BREAKER_COOLDOWN_MS), **env_overrides)
            web = spawn_gunicorn(port, tmp_path / f"gunicorn-{port}.log", env, workers)
            started.append(web)
            batch.append(web)
        for web in batch:
            web.wait_listening(timeout=60)
        warm_up([web.port for web in batch], concurrency=2 * workers)
        return batch

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def celery_process(celery_process: Callable[..., subprocess.Popen[bytes]]) -> Callable[..., subprocess.Popen[bytes]]:
    """The shared launcher, with this suite's short breaker cooldown and INFO logs."""

    def start(kind: str, **env: str) -> subprocess.Popen[bytes]:
        defaults = {"CACHE_BREAKER_COOLDOWN_MS": str(BREAKER_COOLDOWN_MS), "LOG_LEVEL": "INFO"}
        return celery_process(kind, **{**defaults, **env})

    return start
