"""Shared fixtures: cache isolation, clients, tokens, servers the tests start, and the figures report.

The helpers behind them live in ``tests/support``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from cachemgmt import cache
from tests.support.bigquery import TABLE, FakeBigQuery
from tests.support.browser import CHROMIUM
from tests.support.processes import (
    RedisServer,
    WebProcess,
    free_port,
    process_env,
    spawn_celery,
    spawn_gunicorn,
    terminate,
)
from tests.support.report import report_write, terminal_summary
from tests.support.services import clear_project_keys, service_missing, uses_postgres, uses_redis
from tests.support.tokens import access_token
from zones import sources

# Fixtures that start a process (directly or through another fixture): their tests are marked slow.
PROCESS_FIXTURES = frozenset({"redis_server", "spare_redis", "web_process", "celery_process", "busy_redis", "chromium"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that start processes need @pytest.mark.slow: " + ", ".join(unmarked))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminal_summary(terminalreporter)


@pytest.fixture
def chromium() -> None:
    """Debian's Chromium (``tests.support.browser.chromium_page`` drives it)."""
    if not os.access(CHROMIUM, os.X_OK):
        service_missing(f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture
def postgres() -> None:
    if not uses_postgres():
        service_missing("PostgreSQL is not configured (DATABASE_URL)")


@pytest.fixture
def redis_cache() -> None:
    if not uses_redis():
        service_missing("Redis is not configured (REDIS_URL)")


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    cache.reset_store()
    clear_project_keys()
    yield
    cache.reset_store()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def bearer() -> Callable[[Any], dict[str, str]]:
    """Headers carrying a token of a new session of ``user`` (no login round trip)."""

    def make(user: Any) -> dict[str, str]:
        token = access_token(user)
        return {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    return make


@pytest.fixture
def hardening_report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``hardening_report(**figures)`` writes this test's figures and prints its one line."""
    name = request.node.name

    def write(**figures: Any) -> Path:
        return report_write(tmp_path_factory.getbasetemp(), name, figures)

    return write


# --------------------------------------------------------------------------------------
# Servers of the test's own: Redis, gunicorn, Celery (tests using them are marked slow).
# --------------------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.started(prefix="redis-test-")
    yield server
    server.remove()


@pytest.fixture
def web_process(tmp_path: Path) -> Iterator[Callable[..., WebProcess]]:
    started: list[WebProcess] = []

    def start(workers: int = 1, **env_overrides: str) -> WebProcess:
        port = free_port()
        web = spawn_gunicorn(port, tmp_path / f"gunicorn-{port}.log", process_env(**env_overrides), workers)
        started.append(web)
        web.wait_listening()
        return web

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def celery_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``celery_process("worker" | "beat", **env)``: a Celery process of the test's own."""
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str, **env: str) -> subprocess.Popen[bytes]:
        proc = spawn_celery(kind, workdir=tmp_path, index=len(started), env=process_env(**env))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        terminate(proc, timeout=15)


# --------------------------------------------------------------------------------------
# BigQuery: the real client against a local server speaking its REST API.
# --------------------------------------------------------------------------------------


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
