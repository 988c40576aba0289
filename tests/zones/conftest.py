"""Fixtures of the zones tests: organizations, a FakeBigQuery wired in as the zone source, bump spies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts.models import Organization
from cachemgmt import cache
from tests.conftest import TABLE  # noqa: F401 - zones tests import it from here
from tests.factories import OrganizationFactory

Rows = list[tuple[str, str, str]]


def mappings(organizations: int, zones_per_organization: int, *, prefix: str = "org") -> Rows:
    """Rows giving organization ``{prefix}-i`` the zones ``Z{i+j}`` (zones shared between neighbours)."""
    return [
        (f"{prefix}-{i}", f"Z{i + j:05d}", f"Zone {i + j}")
        for i in range(organizations)
        for j in range(zones_per_organization)
    ]


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
