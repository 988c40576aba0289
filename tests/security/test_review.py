"""Code review as tests: secrets are compared in constant time, and only by the libraries that own them."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import jwt.algorithms
from django.contrib.auth import hashers

from accounts import tokens
from tests.support.services import ROOT

APPS = ("accounts", "cachemgmt", "zones", "project")
SECRET_NAME = re.compile(r"password|secret|signature|digest|hmac|mac\b|api_?key|csrf", re.IGNORECASE)
# Equality tests on "token"-named values that are not secrets, with why.
NOT_SECRETS = {
    "token.count('.') != 2": "a shape check before any parsing",
    "claims.token_version != context.token_version": "a revocation counter, inside a verified token",
    "c.get(key) == token": "the owner's own random lock token, never sent by a client",
    "self._fill_locks.get(lock_key, ('',))[0] == lock_token": "an in-process fill lock token",
    "key != 'token_version'": "a log field's name, not its value",
    "user.token_version != session.token_version": "revocation counters read from the database",
}


def equality_tests() -> list[tuple[str, int, str]]:
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                    found.append((str(Path(path).relative_to(ROOT)), node.lineno, ast.unparse(node)))
    return found


def test_no_secret_is_compared_with_equality_operators():
    suspicious = [
        (path, line, source)
        for path, line, source in equality_tests()
        if SECRET_NAME.search(source) or ("token" in source.lower() and source not in NOT_SECRETS)
    ]
    assert suspicious == [], "compare secrets with hmac.compare_digest, or document why it is not one"


def test_token_signatures_are_checked_by_pyjwt_in_constant_time():
    source = inspect.getsource(tokens._verify)  # token_decode verifies through it
    assert "jwt.decode(" in source and "algorithms=[ALGORITHM]" in source  # one algorithm, never the header's
    assert tokens.ALGORITHM == "HS256"
    assert "hmac.compare_digest" in inspect.getsource(jwt.algorithms.HMACAlgorithm.verify)


def test_passwords_are_checked_by_django_in_constant_time():
    for hasher in (hashers.PBKDF2PasswordHasher, hashers.MD5PasswordHasher):
        assert "constant_time_compare" in inspect.getsource(hasher.verify)
    # The project never compares a password itself: it calls Django's authenticate().
    assert "authenticate(" in (ROOT / "accounts" / "services.py").read_text()


def test_cache_keys_are_built_from_ids_or_digests_only():
    """Every key builder takes an int id, a fixed name, or a digest; client text never reaches a key."""
    from cachemgmt import cache

    builders = [name for name in dir(cache) if name.endswith("_key") and callable(getattr(cache, name))]
    assert set(builders) >= {"entry_key", "dep_user_key", "throttle_key", "task_lock_key"}
    throttling_source = (ROOT / "accounts" / "throttling.py").read_text()
    assert "hashlib.sha256" in throttling_source and "cache.throttle_key(" in throttling_source
    for name in ("dep_user_key", "dep_organization_key", "dep_role_key"):
        assert "int(" in inspect.getsource(getattr(cache, name))
