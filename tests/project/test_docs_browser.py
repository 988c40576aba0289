"""The interactive documentation in a real headless Chromium: every operation renders, from local assets,
and "Try it out" logs in and then reads /api/me with the token it got."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.factories import PASSWORD, MembershipFactory
from tests.support.browser import chromium_page, screenshots

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def operation_count() -> int:
    schema = json.loads(Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    return sum(1 for item in schema["paths"].values() for method in item if method != "parameters")


def try_it_out(page: Any, block: str, body: dict[str, str] | None = None) -> Any:
    """Expand an operation, run it from the page, and return its answer (status, parsed body)."""
    operation = page.locator(f"#{block}")
    operation.locator(".opblock-summary").first.click()
    operation.locator("button.try-out__btn").click()
    if body is not None:
        operation.locator("textarea.body-param__text").fill(json.dumps(body))
    operation.locator("button.execute").click()
    response = operation.locator(".live-responses-table .response").first
    response.wait_for()
    status = int(response.locator(".response-col_status").inner_text().strip().split()[0])
    text = response.locator(".response-col_description pre").first.inner_text()
    return status, json.loads(text)


def test_swagger_ui_renders_every_operation_and_tries_login_then_me(live_server, chromium):
    user = MembershipFactory().user
    expected = operation_count()
    with chromium_page() as page:
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{live_server.url}/api/docs/")
        page.wait_for_selector(".opblock")
        assert page.locator(".opblock").count() == expected
        assert requested and all(url.startswith(live_server.url) for url in requested), requested  # no CDN

        status, body = try_it_out(
            page, "operations-auth-auth_login", {"username": user.username, "password": PASSWORD, "device": "docs"}
        )
        assert status == 200 and body["token_type"] == "Bearer"

        page.locator("button.authorize").first.click()
        bearer = page.locator("form").filter(has_text="bearerAuth (http, Bearer)")
        bearer.locator("input").first.fill(body["access_token"])
        bearer.get_by_label("Apply credentials").click()
        page.locator("button.btn-done").first.click()

        status, me = try_it_out(page, "operations-me-me")
        page.screenshot(path=str(screenshots("api-docs-swagger")), full_page=True)
    assert status == 200
    assert me["user"]["username"] == user.username


def test_redoc_renders_every_operation_from_local_assets(live_server, chromium):
    """Redoc's bundle asks its CDN for a logo: the page's Content-Security-Policy stops that
    request in the browser, so nothing is fetched from another host."""
    expected = operation_count()
    assert "img-src 'self' data:" in Client().get("/api/redoc/")["Content-Security-Policy"]
    with chromium_page() as page:
        requested: list[str] = []  # answered requests
        page.on("response", lambda response: requested.append(response.url))
        page.goto(f"{live_server.url}/api/redoc/")
        page.wait_for_selector("[data-section-id^='operation/']", state="attached")
        assert page.locator("[data-section-id^='operation/']").count() == expected
        page.screenshot(path=str(screenshots("api-docs-redoc")))
    # Its own page, the sidecar's script and the schema (a blob: URL is Redoc's worker, in-page).
    assert all(url.startswith((live_server.url, "blob:" + live_server.url)) for url in requested), requested
