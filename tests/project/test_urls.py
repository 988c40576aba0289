"""The API's routes are mounted flat: each resolves in one level, under the names the apps give them."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, get_resolver, resolve, reverse


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/me", "me"),
        ("/api/auth/login", "auth-login"),
        ("/api/auth/sessions/abc", "auth-session"),
        ("/api/admin/cache/stats", "admin-cache-stats"),
        ("/api/admin/zones/sync", "admin-zones-sync"),
    ],
)
def test_api_routes_resolve_in_one_level(path, name):
    match = resolve(path)
    assert match.url_name == name and match.namespaces == []
    top_level = {str(p.pattern) for p in get_resolver().url_patterns if isinstance(p, URLPattern)}
    assert match.route in top_level
    assert reverse(name, kwargs=match.kwargs) == path


def test_the_hot_route_is_tried_first():
    assert str(get_resolver().url_patterns[0].pattern) == "api/me"
