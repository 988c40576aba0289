"""Fixtures of the security tests: one caller of each kind, and the report of figures."""

from __future__ import annotations

from typing import Any

from tests.faults.harness import hardening_report, terminal_summary  # noqa: F401 - fixture


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminal_summary(terminalreporter)
