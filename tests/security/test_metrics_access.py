"""/metrics answers only configured addresses or the metrics bearer secret; open in the demo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import Client

from tests.support.services import ROOT

pytestmark = pytest.mark.django_db


def scrape(address: str, **headers: str):
    return Client().get("/metrics", REMOTE_ADDR=address, **headers)


def test_only_allowed_networks_are_answered(settings):
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16", "::1"]
    settings.METRICS_TOKEN = None
    assert scrape("10.1.2.3").status_code == 200
    assert scrape("::1").status_code == 200
    refused = scrape("203.0.113.9", HTTP_X_FORWARDED_FOR="10.1.2.3")  # a forwarded address is not trusted
    assert refused.status_code == 403 and b"http_request_duration" not in refused.content


def test_the_bearer_secret_opens_it_from_anywhere(settings):
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = "scrape-secret-0123456789"
    assert scrape("203.0.113.9").status_code == 403
    assert scrape("203.0.113.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert scrape("203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-secret-0123456789").status_code == 200


def settings_of(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in {"METRICS_ALLOWED_IPS", "SECURE_COOKIES"}}
    environment.update(DJANGO_SETTINGS_MODULE="project.settings", SECRET_KEY="k" * 50, **env)
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.METRICS_ALLOWED_IPS, getattr(s, 'SESSION_COOKIE_SECURE', False), "
        "getattr(s, 'SECURE_SSL_REDIRECT', False))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    return result.stdout.strip() + result.stderr.strip()[-300:]


@pytest.mark.slow
def test_defaults_closed_in_production_open_in_the_demo():
    assert settings_of(DEBUG="0") == "[] True True"
    assert settings_of(DEBUG="1") == "['*'] False False"
    assert settings_of(DEBUG="0", SECURE_COOKIES="0", METRICS_ALLOWED_IPS="10.0.0.0/8") == "['10.0.0.0/8'] False False"


@pytest.mark.slow
def test_a_malformed_allow_list_stops_start_up_naming_the_variable():
    output = settings_of(DEBUG="0", METRICS_ALLOWED_IPS="10.0.0.0/8,not-an-address")
    assert "METRICS_ALLOWED_IPS" in output and "not-an-address" in output
