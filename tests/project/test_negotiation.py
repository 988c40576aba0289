"""Content negotiation: JSON answered without parsing for what nearly every client sends, DRF's answer otherwise."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.negotiation import DefaultContentNegotiation

from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def negotiations(monkeypatch) -> list[str]:
    """Each time DRF's own negotiation runs (the fast path did not answer)."""
    calls: list[str] = []
    original = DefaultContentNegotiation.select_renderer

    def counting(self, request, renderers, format_suffix=None):
        calls.append(request.META.get("HTTP_ACCEPT", "(none)"))
        return original(self, request, renderers, format_suffix)

    monkeypatch.setattr(DefaultContentNegotiation, "select_renderer", counting)
    return calls


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_the_usual_accept_values_get_json_without_drfs_negotiation(bearer, negotiations, accept):
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = Client().get("/api/me", **bearer(MembershipFactory().user), **extra)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert negotiations == []


@pytest.mark.parametrize(
    ("accept", "query", "status"),
    [
        ("application/json; indent=2", "", 200),
        ("text/html, application/json;q=0.9", "", 200),
        ("text/html", "", 406),
        ("", "", 406),
        (None, "format=json", 200),
        (None, "format=xml", 404),
    ],
)
def test_everything_else_is_negotiated_by_drf(bearer, negotiations, accept, query, status):
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    path = f"/api/me?{query}" if query else "/api/me"
    response = Client().get(path, **bearer(MembershipFactory().user), **extra)
    assert response.status_code == status
    assert negotiations  # DRF decided (twice for a 406: once more to render the refusal)
    if status == 406:
        assert response.json()["code"] == "not_acceptable"


def test_a_view_whose_first_renderer_is_not_json_is_negotiated_by_drf(negotiations):
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert negotiations
