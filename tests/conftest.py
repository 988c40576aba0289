"""Shared fixtures: cache isolation, clients, tokens, and real servers started by the tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.tokens import token_issue
from cachemgmt import cache
from tests.bqserver import FakeBigQuery
from zones import sources

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() == "true"


def service_missing(reason: str) -> None:
    """A test whose service is unreachable fails under CI=true and is skipped elsewhere."""
    if CI:
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


def uses_postgres() -> bool:
    return connection.vendor == "postgresql"


def uses_redis() -> bool:
    return bool(getattr(settings, "REDIS_URL", None))


@pytest.fixture
def postgres() -> None:
    if not uses_postgres():
        service_missing("PostgreSQL is not configured (DATABASE_URL)")


@pytest.fixture
def redis_cache() -> None:
    if not uses_redis():
        service_missing("Redis is not configured (REDIS_URL)")


def _clear_project_keys() -> None:
    if uses_redis():
        from django_redis import get_redis_connection

        client = get_redis_connection("default")
        try:
            keys = list(client.scan_iter(match=f"{settings.CACHE_KEY_PREFIX}*", count=1000))
        except Exception as exc:  # the test Redis must be there
            service_missing(f"Redis unreachable: {exc}")
            return
        if keys:
            client.delete(*keys)
    else:
        from django.core.cache import caches

        caches["default"].clear()


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    cache.reset_store()
    _clear_project_keys()
    yield
    cache.reset_store()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def bearer() -> Callable[[Any], dict[str, str]]:
    """Headers carrying a fresh token for ``user`` (issued directly: no login round trip)."""

    def make(user: Any) -> dict[str, str]:
        token, _ = token_issue(user_id=user.pk, token_version=user.token_version)
        return {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


# --------------------------------------------------------------------------------------
# A Redis server of the test's own, to stop, pause and restart.
# --------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    workdir: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server is not installed")
            return
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir, "--logfile", os.path.join(self.workdir, "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def use_redis_server(settings: Any, server: RedisServer, *, timeout: float, max_connections: int) -> None:
    """Point this process's cache (``REDIS_URL`` and Django's cache) at ``server``."""
    settings.REDIS_URL = server.url
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": timeout,
                "SOCKET_TIMEOUT": timeout,
                "CONNECTION_POOL_KWARGS": {"max_connections": max_connections, "retry_on_timeout": False},
            },
        }
    }


class FakeClock:
    """A monotonic clock the test moves by hand (``clock.now += 1.0``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), workdir=tempfile.mkdtemp(prefix="redis-test-"))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Web processes (gunicorn) sharing the test database and cache.
# --------------------------------------------------------------------------------------


@dataclass
class WebProcess:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def process_env(**overrides: str) -> dict[str, str]:
    """The environment a server process needs to share this test run's database and cache."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if connection.vendor == "postgresql":
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{host}:{port}/{db['NAME']}"
    env["SECRET_KEY"] = settings.SECRET_KEY
    env["CACHE_KEY_PREFIX"] = settings.CACHE_KEY_PREFIX
    env["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"  # the product settings plus the fast test hasher
    env["LOG_LEVEL"] = "WARNING"
    env.update(overrides)
    return env


def spawn_gunicorn(port: int, log: Path, env: dict[str, str], workers: int) -> WebProcess:
    """Start ``gunicorn project.wsgi`` on ``port`` (not waiting for it to listen)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--timeout", "30", "--graceful-timeout", "2"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return WebProcess(port=port, proc=proc, log=log, env=env)


@pytest.fixture
def web_process(tmp_path: Path) -> Iterator[Callable[..., WebProcess]]:
    started: list[WebProcess] = []

    def start(workers: int = 1, **env_overrides: str) -> WebProcess:
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        web = spawn_gunicorn(port, log, process_env(**env_overrides), workers)
        started.append(web)
        try:
            wait_for_port(port, proc=web.proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from None
        return web

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def celery_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``celery_process("worker" | "beat", **env)``: a Celery process of the test's own."""
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str, **env: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"celery-{kind}-{len(started)}.log"
        if kind == "worker":
            name = f"test-{os.getpid()}-{len(started)}@%h"
            args = ["worker", "--pool=solo", "--concurrency=1", "--without-mingle", "--without-gossip",
                    "--without-heartbeat", "--loglevel=INFO", "-n", name]  # fmt: skip
        else:
            args = ["beat", "--loglevel=INFO", "-s", str(tmp_path / f"beat-schedule-{len(started)}")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "project", *args],
            cwd=ROOT,
            env=process_env(**env),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        proc.log = log  # type: ignore[attr-defined]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------------------
# BigQuery: the real client against a local server speaking its REST API.
# --------------------------------------------------------------------------------------

TABLE = "fake-project.zones_ds.zone_mappings"


@pytest.fixture
def bigquery(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBigQuery]:
    """A FakeBigQuery configured as ``ZONE_SOURCE=bigquery``; small pages so every sync pages."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    sources._clear_client_cache()
    with FakeBigQuery(page_size=50) as fake:
        settings.ZONES = {
            **settings.ZONES,
            "SOURCE": "bigquery",
            "BIGQUERY_PROJECT": "fake-project",
            "BIGQUERY_ZONE_TABLE": TABLE,
            "BIGQUERY_API_ENDPOINT": fake.url,
            "BIGQUERY_TIMEOUT": 0.5,
            "BIGQUERY_PAGE_SIZE": 50,
        }
        fake.delay = 3.0
        yield fake
    sources._clear_client_cache()
