"""seed_demo and start-up configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Membership, User
from tests.support.services import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_prints_credentials_and_is_idempotent():
    out = StringIO()
    call_command("seed_demo", "--users", "4", "--password", "pw-for-demo-1", stdout=out)
    text = out.getvalue()
    assert "admin" in text and "user4" in text and "pw-for-demo-1" in text
    counts = (User.objects.count(), Membership.objects.count())
    call_command("seed_demo", "--users", "4", "--password", "pw-for-demo-1", stdout=StringIO())
    assert (User.objects.count(), Membership.objects.count()) == counts
    assert Membership.objects.filter(is_active=True).count() == 5
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.check_password("pw-for-demo-1")


@pytest.mark.parametrize("args", [["--users", "-1"], ["--password", "short"]])
def test_seed_demo_refuses_bad_arguments(args):
    with pytest.raises(CommandError):
        call_command("seed_demo", *args, stdout=StringIO())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USER_CONTEXT_TTL", "soon"),
        ("ZONE_SOURCE", "oracle"),
        ("REDIS_URL", "http://nope"),
        ("DATABASE_URL", "mysql://x"),
        ("DEBUG", "perhaps"),
        ("DB_MAX_CONNECTIONS", "0"),
        ("SECRET_KEY", ""),
    ],
)
@pytest.mark.slow
def test_bad_configuration_stops_start_up_with_one_line_naming_the_variable(variable, value):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"SECRET_KEY": "x" * 50, "DEBUG": "0", variable: value})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
