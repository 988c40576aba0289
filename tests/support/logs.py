"""Log lines as the project writes them: captured and rendered as JSON by its own structlog formatter."""

from __future__ import annotations

import io
import json
import logging

import structlog

from project.logging import FOREIGN_PRE_CHAIN, Formatter


class LogCapture:
    """Everything logged, rendered as JSON lines by the project's own structlog formatter."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self, event: str) -> list[dict]:
        found = []
        for line in self.text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                found.append(record)
        return found

    def handler(self) -> logging.Handler:
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(
            Formatter(processor=structlog.processors.JSONRenderer(), foreign_pre_chain=FOREIGN_PRE_CHAIN)
        )
        handler.setLevel(logging.DEBUG)
        return handler
