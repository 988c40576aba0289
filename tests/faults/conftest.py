"""Fixtures of the fault tests: servers of the test's own (web, Redis, broker, Celery) to break and restart."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cachemgmt import cache
from tests.conftest import (
    RedisServer,
    WebProcess,
    free_port,
    process_env,
    spawn_gunicorn,
    use_redis_server,
    wait_for_port,
)
from tests.faults.harness import hardening_report, terminal_summary, warm_up  # noqa: F401 - fixture

# Gunicorn workers of these tests probe a broken cache after this long (the default is 5 s).
BREAKER_COOLDOWN_MS = 1000


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminal_summary(terminalreporter)


@pytest.fixture
def own_redis(redis_server: RedisServer, settings: Any) -> Iterator[RedisServer]:
    """This process's cache on a Redis server of the test's own, with the web processes' breaker."""
    use_redis_server(settings, redis_server, timeout=0.25, max_connections=50)
    settings.CACHE_BREAKER_COOLDOWN_MS = BREAKER_COOLDOWN_MS
    cache.reset_store()
    yield redis_server
    cache.reset_store()


@pytest.fixture
def spare_redis() -> Iterator[Callable[..., RedisServer]]:
    """More Redis servers (a broker, ...); ``persistent=True`` keeps data across a stop and start."""
    servers: list[RedisServer] = []

    def make(*, persistent: bool = False) -> RedisServer:
        server = PersistentRedis(port=free_port(), workdir=tempfile.mkdtemp(prefix="redis-fault-"))
        server.persistent = persistent
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


class PersistentRedis(RedisServer):
    """A Redis server that, when ``persistent``, writes an append-only file and shuts down cleanly."""

    persistent: bool = False

    def start(self) -> None:
        if not self.persistent:
            super().start()
            return
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", self.workdir,
             "--logfile", os.path.join(self.workdir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, proc=self.proc)

    def shutdown(self) -> None:
        """A clean stop (SIGTERM): the append-only file holds every write."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


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
            log = tmp_path / f"gunicorn-{port}.log"
            env = process_env(CACHE_BREAKER_COOLDOWN_MS=str(BREAKER_COOLDOWN_MS), **env_overrides)
            web = spawn_gunicorn(port, log, env, workers)
            started.append(web)
            batch.append(web)
        for web in batch:
            try:
                wait_for_port(web.port, timeout=60, proc=web.proc)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{web.log.read_text()[-3000:]}") from None
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
