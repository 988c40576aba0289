"""Fixtures of the zones tests: organizations, a FakeBigQuery wired in as the zone source, bump spies."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from accounts.models import Organization
from cachemgmt import cache
from tests.bqserver import FakeBigQuery
from tests.factories import OrganizationFactory
from zones import sources

TABLE = "fake-project.zones_ds.zone_mappings"

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


@pytest.fixture
def bumps(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every dependency bump sent to the cache (one entry per round trip)."""
    sent: list[list[str]] = []
    store = cache.get_store()
    real_bump = store.bump
    monkeypatch.setattr(store, "bump", lambda deps: (sent.append(list(deps)), real_bump(deps))[1])
    return sent
