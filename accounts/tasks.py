"""Celery tasks of the accounts app: pruning sessions whose tokens have all expired."""

from __future__ import annotations

from celery import shared_task

from accounts.sessions import sessions_prune


@shared_task(name="accounts.tasks.sessions_prune_task", ignore_result=True)
def sessions_prune_task() -> int:
    """Delete expired sessions (idempotent: a second run finds nothing to do)."""
    return sessions_prune()
