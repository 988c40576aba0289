"""Access tokens for tests: a real session, without a login round trip (no password hashing)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from accounts.sessions import session_create
from accounts.tokens import token_issue


def access_token(user: Any, *, now: float | None = None, device: str = "tests") -> str:
    """A token of a new session of ``user`` (its context is invalidated, not loaded)."""
    session, _ = session_create(
        user_id=user.pk, token_version=user.token_version, device=device, ip=None, now=timezone.now()
    )
    token, _ = token_issue(user_id=user.pk, token_version=session.token_version, session_id=str(session.pk), now=now)
    return token
