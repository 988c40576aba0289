"""Fixtures of the operations tests: staff and member users, and a captured structured log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from project.logging import FOREIGN_PRE_CHAIN, Formatter
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def broker_drained() -> Iterator[None]:
    """Zone syncs the test queues leave no message behind for another test's worker."""
    from project.celery import app

    yield
    if not app.conf.task_always_eager:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(app.conf.task_default_queue)


@pytest.fixture
def staff_user():
    return UserFactory(is_staff=True)


@pytest.fixture
def member():
    return MembershipFactory().user


class LogCapture:
    """Everything logged, rendered as JSON lines by the project's own structlog formatter."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self, event: str) -> list[dict]:
        import json

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


@pytest.fixture
def log_capture() -> Iterator[LogCapture]:
    capture = LogCapture()
    handler = capture.handler()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
