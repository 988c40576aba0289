"""Writes: clearing cached entries, starting a zone sync, and the audit trail of both.

Every entry point (API, admin page, management command) goes through these functions, so
every clear and sync is audited the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cachemgmt import cache
from cachemgmt.models import CacheAuditEntry

logger = logging.getLogger("cachemgmt")

CLEAR_CHOICES: tuple[str, ...] = (*cache.NAMESPACES, "all")


class ClearRefused(ValueError):
    """The request names an unknown namespace or user; nothing was cleared or recorded."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ZoneSyncUnavailable(Exception):
    """This build has no zone sync to start."""


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
    Redis database are never touched. Returns ``{"namespace", "cleared"}``.
    """
    from accounts.models import User

    if namespace not in CLEAR_CHOICES:
        raise ClearRefused("namespace", f"Unknown namespace {namespace!r}; expected one of {', '.join(CLEAR_CHOICES)}.")
    if user_id is not None:
        if namespace != "user_context":
            raise ClearRefused("user_id", "user_id can only be combined with the user_context namespace.")
        if not User.objects.filter(pk=user_id).exists():
            raise ClearRefused("user_id", f"No user with id {user_id}.")
        cache.deps_bump([cache.dep_user_key(user_id)])
        cleared = [f"user_context of user {user_id}"]
    else:
        cleared = list(cache.NAMESPACES) if namespace == "all" else [namespace]
        for name in cleared:
            if name == "zones":
                cache.deps_bump([cache.namespace_key("zones"), cache.dep_zones_key()], namespace="zones")
            else:
                cache.namespace_clear(name)
    target = namespace if user_id is None else f"user_context:user={user_id}"
    audit_record(
        actor=actor,
        source=source,
        action=CacheAuditEntry.Action.CLEAR,
        target=target,
        result="cleared " + ", ".join(cleared),
    )
    return {"namespace": namespace, "cleared": cleared}


def _sync_outcome(outcome: Any) -> dict[str, Any]:
    """``zone_sync_enqueue``'s answer as JSON: ``{"status": "queued"}``, or the inline run's outcome."""
    if outcome is None:
        return {"status": "queued"}
    if isinstance(outcome, dict):
        return {"status": "queued", **outcome}
    if hasattr(outcome, "as_dict"):
        return {"status": "done", **outcome.as_dict()}
    result: dict[str, Any] = {"status": str(getattr(outcome, "status", "done"))}
    for name in ("rows", "error"):
        value = getattr(outcome, name, None)
        if value not in (None, ""):
            result[name] = value
    return result


def sync_summary(outcome: dict[str, Any]) -> str:
    """The few facts an operator reads first: ``status=ok rows=12`` (and the error, if any)."""
    return " ".join(f"{k}={outcome[k]}" for k in ("status", "rows", "error") if outcome.get(k) not in (None, ""))


def zone_sync_start(*, actor: Actor, source: str) -> dict[str, Any]:
    """Queue one zone sync (with no broker it runs inline and its outcome is returned); audited."""
    try:
        from zones.services import zone_sync_enqueue  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        audit_record(
            actor=actor, source=source, action=CacheAuditEntry.Action.ZONE_SYNC, target="zones", result="unavailable"
        )
        raise ZoneSyncUnavailable("Zone sync is not available in this build.") from None
    try:
        outcome = _sync_outcome(zone_sync_enqueue())
    except Exception as exc:
        logger.exception("zone sync could not be started")
        audit_record(
            actor=actor,
            source=source,
            action=CacheAuditEntry.Action.ZONE_SYNC,
            target="zones",
            result=f"error: {type(exc).__name__}",
        )
        raise
    audit_record(
        actor=actor,
        source=source,
        action=CacheAuditEntry.Action.ZONE_SYNC,
        target="zones",
        result=sync_summary(outcome),
    )
    return outcome
