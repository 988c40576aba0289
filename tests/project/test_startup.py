"""Start-up that fails fast and clearly: one line naming the problem, a non-zero exit, for every process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import free_port
from tests.support.services import ROOT

pytestmark = pytest.mark.slow

GUNICORN_BOOT_ERROR = 3


def environment(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"SECRET_KEY": "x" * 50, "DEBUG": "0", **changes})
    return env


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip() and '"logger": "gunicorn.error"' not in line]


def test_a_bad_setting_stops_the_whole_gunicorn_server_with_one_line():
    command = [sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{free_port()}", "--workers", "2"]
    result = subprocess.run(
        command, cwd=ROOT, env=environment(USER_CONTEXT_TTL="soon"), capture_output=True, text=True, timeout=60
    )
    # The master itself exits (importing the project evaluates the settings; gunicorn.conf.py's
    # hook would exit with gunicorn's boot-error status otherwise): no worker respawned forever.
    assert result.returncode in {2, GUNICORN_BOOT_ERROR}
    assert error_lines(result) == ["configuration error: USER_CONTEXT_TTL: expected an integer, got 'soon'"]
    assert "Booting worker" not in result.stderr


@pytest.mark.parametrize("kind", ["worker", "beat"])
def test_a_bad_setting_stops_celery_with_one_line(kind):
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "project", kind],
        cwd=ROOT,
        env=environment(ZONE_SOURCE="oracle"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert error_lines(result) == ["configuration error: ZONE_SOURCE: expected one of fixture, bigquery, got 'oracle'"]


def test_an_unreachable_database_is_one_line_for_a_command():
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=ROOT,
        env=environment(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nothing", DB_POOL_TIMEOUT="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("database unreachable: "), result.stderr
