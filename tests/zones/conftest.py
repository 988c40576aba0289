"""Fixtures of the zones tests: organizations and bump spies (the ``bigquery`` fixture is shared)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts.models import Organization
from cachemgmt import cache
from tests.factories import OrganizationFactory


@pytest.fixture
def organizations() -> Callable[..., list[Organization]]:
    def make(*slugs: str) -> list[Organization]:
        return [OrganizationFactory(slug=slug, name=slug.title()) for slug in slugs]

    return make


@pytest.fixture
def bumps(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every dependency bump sent to the cache (one entry per round trip)."""
    sent: list[list[str]] = []
    store = cache.get_store()
    real_bump = store.bump
    monkeypatch.setattr(store, "bump", lambda deps: (sent.append(list(deps)), real_bump(deps))[1])
    return sent
