"""Fixtures of the operations tests: staff and member users, and a captured structured log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.factories import MembershipFactory, UserFactory
from tests.support.logs import LogCapture


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
