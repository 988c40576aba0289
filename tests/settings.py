"""Test settings: the project's settings with a test secret and a fast password hasher."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("CACHE_KEY_PREFIX", "authctx-test")
# The tests' servers speak plain HTTP on loopback, and the tests scrape /metrics from there.
os.environ.setdefault("SECURE_COOKIES", "0")
os.environ.setdefault("METRICS_ALLOWED_IPS", "127.0.0.0/8,::1")

from project.settings import *  # noqa: F403
from project.settings import ALLOWED_HOSTS

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
# The production hasher is measured in the benchmark; tests only need correctness.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
