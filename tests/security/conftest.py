"""Fixtures of the security tests."""

from __future__ import annotations

import pytest

from tests.support.hashers import CountingHasher


@pytest.fixture
def counting_hasher(settings):
    """Make the counting hasher the only one, its count reset."""
    settings.PASSWORD_HASHERS = ["tests.support.hashers.CountingHasher"]
    CountingHasher.computed = 0
    return CountingHasher
