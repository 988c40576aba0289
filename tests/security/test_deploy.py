"""Production settings pass Django's deployment checks, and the checks do run."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.support.services import ROOT

pytestmark = pytest.mark.slow  # each test runs manage.py check --deploy


def deploy_check(**env: str) -> subprocess.CompletedProcess[str]:
    unset = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECURE_COOKIES", "METRICS_ALLOWED_IPS"}
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment.update(DJANGO_SETTINGS_MODULE="project.settings", DEBUG="0", ALLOWED_HOSTS="api.example.com", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = deploy_check(SECRET_KEY=secrets.token_urlsafe(50), SECURE_COOKIES="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_defaults_pass_check_deploy_without_any_opt_in():
    """SECURE_COOKIES defaults to on when DEBUG=0: a forgotten variable is not an insecure deployment."""
    result = deploy_check(SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_catches_a_weak_key_and_plain_cookies():
    result = deploy_check(SECRET_KEY="short-key", SECURE_COOKIES="0")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    for warning in ("security.W009", "security.W016"):  # weak key, CSRF cookie
        assert warning in output
    # The session cookie: W012 names Django's own session middleware, W010 the sessions app;
    # with the project's browser-only session middleware Django reports the latter.
    assert "security.W010" in output or "security.W012" in output
