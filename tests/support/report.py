"""Figures of the fault and security tests: one line printed per test, and a JSON file under the pytest
temporary directory (so the figures survive output capture); the terminal summary repeats every line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_LINES: list[str] = []


def report_write(base: Path, name: str, figures: dict[str, Any]) -> Path:
    folder = base / "hardening"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"test": name, **figures}, indent=2, sort_keys=True, default=str))
    line = f"[hardening] {name}: " + " ".join(f"{key}={value}" for key, value in figures.items())
    print(line)
    REPORT_LINES.append(line)
    return path


def terminal_summary(terminalreporter: Any) -> None:
    if not REPORT_LINES:
        return
    terminalreporter.section("hardening figures (JSON under <pytest tmp>/hardening/)")
    for line in REPORT_LINES:
        terminalreporter.write_line(line)
