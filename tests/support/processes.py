"""Servers the tests start themselves: Redis, gunicorn and Celery, sharing this run's database and cache."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from tests.support.services import ROOT, service_missing


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


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------
# A Redis server of the test's own, to stop, pause and restart.
# --------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    workdir: str
    proc: subprocess.Popen[bytes] | None = None
    #: an append-only file written on every write: the data survives a clean ``shutdown`` and ``start``
    persistent: bool = False
    #: more ``redis-server`` arguments (``--replicaof host port``, ...)
    extra: list[str] = field(default_factory=list)

    @classmethod
    def started(cls, *, prefix: str, persistent: bool = False) -> RedisServer:
        """A server on a free port with a temporary directory of its own (``remove`` deletes both)."""
        server = cls(port=free_port(), workdir=tempfile.mkdtemp(prefix=prefix), persistent=persistent)
        server.start()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server is not installed")
            return
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", self.workdir, "--logfile", os.path.join(self.workdir, "redis.log"), *self.extra],
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

    def shutdown(self) -> None:
        """A clean stop (SIGTERM): a persistent server's append-only file holds every write."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

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


# --------------------------------------------------------------------------------------
# Web (gunicorn) and Celery processes sharing the test database and cache.
# --------------------------------------------------------------------------------------


def process_env(**overrides: str) -> dict[str, str]:
    """The environment a server process needs to share this test run's database and cache."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if connection.vendor == "postgresql":
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{host}:{port}/{db['NAME']}"
    env["SECRET_KEY"] = settings.SECRET_KEY
    env["CACHE_KEY_PREFIX"] = settings.CACHEMGMT["KEY_PREFIX"]
    env["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"  # the product settings plus the fast test hasher
    env["LOG_LEVEL"] = "WARNING"
    env.update(overrides)
    return env


@dataclass
class WebProcess:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 20.0) -> None:
        """Until gunicorn listens; if it exits or times out, the error carries the end of its log."""
        try:
            wait_for_port(self.port, timeout=timeout, proc=self.proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log.read_text()[-3000:]}") from None

    def stop(self) -> None:
        terminate(self.proc, timeout=10)


def spawn_gunicorn(port: int, log: Path, env: dict[str, str], workers: int) -> WebProcess:
    """Start ``gunicorn project.wsgi`` on ``port`` (not waiting for it to listen)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--timeout", "30", "--graceful-timeout", "2"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return WebProcess(port=port, proc=proc, log=log, env=env)


def spawn_celery(kind: str, *, workdir: Path, index: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``celery -A project worker`` (one solo worker) or ``beat``; its log file is ``proc.log``."""
    log = workdir / f"celery-{kind}-{index}.log"
    if kind == "worker":
        name = f"test-{os.getpid()}-{index}@%h"
        args = ["worker", "--pool=solo", "--concurrency=1", "--without-mingle", "--without-gossip",
                "--without-heartbeat", "--loglevel=INFO", "-n", name]  # fmt: skip
    else:
        args = ["beat", "--loglevel=INFO", "-s", str(workdir / f"beat-schedule-{index}")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "project", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc
