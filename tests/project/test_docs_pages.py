"""The documentation pages: public, confined to this host, linked from the admin."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_pages_are_public_and_load_nothing_from_another_host(path):
    response = Client().get(path, HTTP_AUTHORIZATION="Bearer expired-or-garbage")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "googleapis" not in html and "cdn." not in html
    assert response["Content-Security-Policy"].startswith("default-src 'self'")


def test_the_admin_index_links_the_api_documentation(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert 'href="/api/docs/"' in page and 'href="/api/redoc/"' in page and 'href="/api/schema/"' in page
