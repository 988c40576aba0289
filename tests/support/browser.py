"""Debian's headless Chromium, driven by Playwright (never a browser Playwright downloads)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page of Debian's Chromium driven by Playwright (never a browser Playwright downloads).

    Playwright's sync API runs an event loop in this thread: no ORM call while it is open.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def screenshots(name: str) -> Path:
    """Where a browser test keeps a screenshot of a page (kept after the run, not committed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
