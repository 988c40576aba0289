"""Writes: clearing cached entries, and the audit trail of operator actions (clears, zone syncs).

Every entry point (API, admin page, management command) goes through these functions, so
every clear and sync is audited the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from cachemgmt import cache
from cachemgmt.capture import CHANGE_TABLE, NOTIFY_CHANNEL
from cachemgmt.models import CacheAuditEntry, DependencyChange

logger = logging.getLogger("cachemgmt")

CLEAR_CHOICES: tuple[str, ...] = (*cache.NAMESPACES, "all")


class ClearRefused(ValueError):
    """The request names an unknown namespace or user; nothing was cleared or recorded."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked: a user (``user_id``) or an operator at the command line (no id)."""

    label: str
    user_id: int | None = None

    @classmethod
    def from_user(cls, user: Any) -> Actor:
        return cls(label=str(user.get_username()), user_id=int(user.pk))


def audit_record(*, actor: Actor, source: str, action: str, target: str, result: str) -> CacheAuditEntry:
    entry = CacheAuditEntry.objects.create(
        actor_id=actor.user_id,
        actor_label=actor.label[:150],
        source=source,
        action=action,
        target=target[:100],
        result=result[:200],
    )
    logger.info(
        "operator action",
        extra={"action": action, "target": target, "result": result, "source": source, "actor": actor.label},
    )
    return entry


def cache_clear(*, namespace: str, user_id: int | None = None, actor: Actor, source: str) -> dict[str, Any]:
    """Defeat cached entries by generation bumps (O(1): nothing is scanned, deleted or flushed).

    ``user_context`` or ``all`` drops every user context; with ``user_id``, only that user's
    context (its dependency key). ``zones`` drops the cached zone data and, because contexts
    embed their organization's zones, the zone part of every context. Other keys in the same
    Redis database are never touched. The clear is also recorded as dependency changes, so
    every process's in-process cache follows it. Returns ``{"namespace", "cleared"}``.
    """
    if namespace not in CLEAR_CHOICES:
        raise ClearRefused("namespace", f"Unknown namespace {namespace!r}; expected one of {', '.join(CLEAR_CHOICES)}.")
    if user_id is not None:
        if namespace != "user_context":
            raise ClearRefused("user_id", "user_id can only be combined with the user_context namespace.")
        if not get_user_model()._default_manager.filter(pk=user_id).exists():
            raise ClearRefused("user_id", f"No user with id {user_id}.")
        cache.deps_bump([cache.dep_user_key(user_id)])
        changes = [DependencyChange(kind="user", ident=user_id)]
        cleared = [f"user_context of user {user_id}"]
    else:
        cleared = list(cache.NAMESPACES) if namespace == "all" else [namespace]
        changes = [DependencyChange(kind="namespace", ident=cache.NAMESPACES.index(name)) for name in cleared]
        for name in cleared:
            if name == "zones":
                cache.deps_bump([cache.namespace_key("zones"), cache.dep_zones_key()], namespace="zones")
                changes.append(DependencyChange(kind="zones"))
            else:
                cache.namespace_clear(name)
    # Recorded as changes too: with in-process caches, every serving process's carrier
    # applies them to its own store (this process's bump reaches only this process).
    changes_record(changes)
    target = namespace if user_id is None else f"user_context:user={user_id}"
    audit_record(
        actor=actor,
        source=source,
        action=CacheAuditEntry.Action.CLEAR,
        target=target,
        result="cleared " + ", ".join(cleared),
    )
    return {"namespace": namespace, "cleared": cleared}


def changes_record(changes: list[DependencyChange]) -> None:
    """Record changes the way the triggers do (with a NOTIFY at commit on PostgreSQL), so every
    carrier applies them (see ``cachemgmt.capture``)."""
    if connection.vendor != "postgresql":
        DependencyChange.objects.bulk_create(changes)
        return
    with transaction.atomic(), connection.cursor() as cursor:
        for change in changes:
            cursor.execute(
                f"INSERT INTO {CHANGE_TABLE} (kind, ident, created_at) VALUES (%s, %s, clock_timestamp())",  # noqa: S608 - a constant
                [change.kind, change.ident],
            )
        cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])


def outcome_summary(outcome: dict[str, Any]) -> str:
    """The few facts an operator reads first: ``status=ok rows=12`` (and the error, if any)."""
    return " ".join(f"{k}={outcome[k]}" for k in ("status", "rows", "error") if outcome.get(k) not in (None, ""))
