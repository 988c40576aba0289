"""Bearer-token API calls skip sessions, the session user and messages; everything else keeps them."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from project.middleware import (
    BrowserAuthenticationMiddleware,
    BrowserMessageMiddleware,
    BrowserSessionMiddleware,
    is_bearer_api_call,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "authorization", "bearer_api"),
    [
        ("/api/me", "Bearer abc.def.ghi", True),
        ("/api/me", "bearer abc", True),
        ("/api/admin/cache/stats", "Bearer abc", True),
        ("/api/me", "", False),
        ("/api/me", "Token abc", False),
        ("/api/me", "Bearerabc", False),
        ("/admin/", "Bearer abc", False),
        ("/health", "Bearer abc", False),
    ],
)
def test_what_counts_as_a_bearer_api_call(path, authorization, bearer_api):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    assert is_bearer_api_call(RequestFactory().get(path, **headers)) is bearer_api


def chain(seen: list):
    def view(request):
        from django.http import HttpResponse

        seen.append({name: hasattr(request, name) for name in ("session", "user", "_messages")})
        return HttpResponse("ok")

    return BrowserSessionMiddleware(BrowserAuthenticationMiddleware(BrowserMessageMiddleware(view)))


def test_a_bearer_api_call_gets_no_session_user_or_messages():
    seen: list = []
    response = chain(seen)(RequestFactory().get("/api/me", HTTP_AUTHORIZATION="Bearer x.y.z"))
    assert seen == [{"session": False, "user": False, "_messages": False}]
    assert "Cookie" not in response.get("Vary", "")


def test_other_requests_keep_them():
    seen: list = []
    chain(seen)(RequestFactory().get("/admin/", HTTP_AUTHORIZATION="Bearer x.y.z"))
    chain(seen)(RequestFactory().get("/api/admin/cache/stats"))  # a staff session call
    assert seen == [{"session": True, "user": True, "_messages": True}] * 2


def test_the_staff_api_still_accepts_an_admin_session(client, django_user_model):
    staff = django_user_model.objects.create_user("ops", password="pw-123456789", is_staff=True)
    client.force_login(staff)
    assert client.get("/api/admin/cache/stats").status_code == 200
