"""Reads: the user context (cache first, then one SQL query) and the rows it is built from."""

from __future__ import annotations

import functools
import time
import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import CharField, F, OuterRef, Subquery, Value
from django.db.models import Q as _Q
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.conf import accounts_settings
from accounts.context import ZONES_PENDING, ZONES_READY, UserContext, build_context, context_from_payload
from accounts.dependencies import context_deps
from accounts.models import Membership, Organization, Profile, Role, Session, User
from cachemgmt import cache
from cachemgmt.carrier import cache_trusted
from project import request_context
from zones.conf import zones_settings
from zones.models import Zone, ZoneAssignment, ZoneSyncRun
from zones.selectors import OVERDUE_INTERVALS
from zones.selectors import snapshot_status as zone_snapshot_status
from zones.signals import zone_snapshot_overdue

NAMESPACE = "user_context"

# A cached "this user does not exist": distinguishable from a miss, defeated by the user's key.
_NONE_PAYLOAD = b"null"
# The entry's format: part of its key, so processes of two releases sharing Redis during a
# rolling deploy never read each other's entries (dependency keys stay shared: both see every
# invalidation). 2: contexts carry session ids.
_ENTRY_FORMAT = 2


def context_entry_ident(user_id: int) -> str:
    """The cache identity of a user's context entry."""
    return f"{int(user_id)}.v{_ENTRY_FORMAT}"


def user_context_get(*, user_id: int) -> UserContext | None:
    """The context of ``user_id``, or None when no such user exists.

    Served from the cache when every row it was built from is unchanged; otherwise loaded
    with one SQL query (PostgreSQL; two on other databases) by a single caller while
    concurrent callers for the same user wait for its result. A fill is stored only if no
    invalidation committed after its read. Inside a transaction with pending invalidations
    the cache is bypassed: the caller sees its own writes, which are not committed and may
    roll back.
    """
    if cache.invalidations_pending():
        # This transaction changed rows behind contexts: read its own writes, cache nothing.
        return user_context_load(user_id=user_id)
    if not cache_trusted():
        # The carrier of other writers' changes is down or behind: cached contexts may miss
        # a committed change, so the database answers until it has caught up.
        request_context.context_cache_set("bypass")
        cache.count(NAMESPACE, "misses")
        return user_context_load(user_id=user_id)
    result = cache.entry_get(NAMESPACE, context_entry_ident(user_id))
    request_context.context_cache_set("hit" if isinstance(result, cache.Hit) else "miss")
    if isinstance(result, cache.Hit):
        if result.payload == _NONE_PAYLOAD:
            return None
        cached = _decoded_or_none(result.payload)
        if cached is None:
            # Written by an earlier release in another shape: answer from the database and
            # defeat the entry, so the next request refills it in this release's shape.
            cache.deps_bump([cache.dep_user_key(user_id)])
            return user_context_load(user_id=user_id)
        if not cached.zones_overdue():
            return cached
        # The zones snapshot went overdue since these contexts were filled: one O(1) bump
        # makes every one of them refill once with zones_status "stale", and one sync is asked for.
        _zones_sync_hook(reason="overdue", check_snapshot=True)
        cache.deps_bump([cache.dep_zones_key()])
        result = cache.entry_get(NAMESPACE, context_entry_ident(user_id))
        if isinstance(result, cache.Hit):  # refilled meanwhile by another request
            return None if result.payload == _NONE_PAYLOAD else context_from_payload(result.payload)
    context = user_context_load(user_id=user_id)
    if context is not None and context.public["zones_status"] == ZONES_PENDING:
        # No snapshot yet: ask for one sync (deduplicated there). A failed last run is not
        # asked again here: the task's own retries and the beat schedule handle it.
        _zones_sync_hook(reason="missing", check_snapshot=False)
    if result.ticket is not None:
        if context is None:
            cache.entry_put(
                NAMESPACE,
                context_entry_ident(user_id),
                miss=result,
                deps=[cache.dep_user_key(user_id)],
                payload=_NONE_PAYLOAD,
                ttl=_ttl(),
            )
        else:
            cache.entry_put(
                NAMESPACE,
                context_entry_ident(user_id),
                miss=result,
                deps=context_deps(context),
                payload=context.to_payload(),
                ttl=_ttl(),
            )
    return context


def _decoded_or_none(payload: bytes) -> UserContext | None:
    try:
        return context_from_payload(payload)
    except (KeyError, ValueError, TypeError):
        return None


def _ttl() -> int:
    return int(accounts_settings.USER_CONTEXT_TTL)


def _zones_sync_hook(*, reason: str, check_snapshot: bool) -> None:
    """Announce that the zones snapshot is missing or overdue; zones answers with one sync.

    Its receiver deduplicates (one request per interval, none while a sync runs) and never
    waits for the broker, so this costs a request nothing noticeable.
    """
    zone_snapshot_overdue.send(sender=UserContext, reason=reason, check_snapshot=check_snapshot)


# --------------------------------------------------------------------------------------
# Loading from the database
# --------------------------------------------------------------------------------------


def user_context_load(*, user_id: int) -> UserContext | None:
    """Build the context from the database: one statement on PostgreSQL, two elsewhere."""
    if connection.vendor == "postgresql":
        return _load_postgresql(user_id)
    return _load_portable(user_id)


def _zones_state(last_ok: datetime | None, last_status: str | None) -> tuple[str, float | None]:
    """zones_status by the zones app's rule, and when a "ready" answer goes overdue."""
    now = time.time()
    age = None if last_ok is None else now - last_ok.timestamp()
    status = zone_snapshot_status(age_seconds=age, last_run_status=last_status)
    if status != ZONES_READY or last_ok is None:
        return status, None
    return status, last_ok.timestamp() + OVERDUE_INTERVALS * int(zones_settings.SYNC_INTERVAL)


def _user_public(
    user_id: int, username: str, email: str, display_name: str | None, is_staff: bool, is_superuser: bool
) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": username,
        "email": email,
        "display_name": display_name or username,
        "is_staff": is_staff,
        "is_superuser": is_superuser,
    }


def _table(model: Any) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


@functools.cache
def _postgresql_sql() -> str:
    role_perms = _table(Role.permissions.through)
    user_perms = _table(User.user_permissions.through)
    user_groups = _table(User.groups.through)
    group_perms = _table(Group.permissions.through)
    # Table names come from model metadata; the only value is a bound parameter.
    return f"""
SELECT u.id, u.username, u.email, u.is_active, u.is_staff, u.is_superuser, u.token_version,
       p.display_name, m.organization_id, o.is_active, o.slug, o.name, m.role_id, r.name,
       ARRAY(
         SELECT ct.app_label || '.' || ap.codename
         FROM {_table(Permission)} ap JOIN {_table(ContentType)} ct ON ct.id = ap.content_type_id
         WHERE (u.is_superuser AND u.is_active)
            OR ap.id IN (SELECT rp.permission_id FROM {role_perms} rp WHERE rp.role_id = m.role_id AND o.is_active)
            OR ap.id IN (SELECT up.permission_id FROM {user_perms} up WHERE up.user_id = u.id)
            OR ap.id IN (SELECT gp.permission_id FROM {group_perms} gp
                         JOIN {user_groups} ug ON ug.group_id = gp.group_id WHERE ug.user_id = u.id)
       ),
       ARRAY(
         SELECT ARRAY[z.code, z.name]
         FROM {_table(ZoneAssignment)} za JOIN {_table(Zone)} z ON z.id = za.zone_id
         WHERE za.organization_id = o.id AND o.is_active ORDER BY z.code
       ),
       ARRAY(SELECT s.id::text FROM {_table(Session)} s WHERE s.user_id = u.id AND s.ended_at IS NULL
             AND s.token_version = u.token_version AND s.expires_at > now()),
       (SELECT max(s.finished_at) FROM {_table(ZoneSyncRun)} s WHERE s.status = 'ok'),
       (SELECT s.status FROM {_table(ZoneSyncRun)} s WHERE s.status <> 'running'
        ORDER BY s.started_at DESC LIMIT 1)
FROM {_table(User)} u
LEFT JOIN {_table(Profile)} p ON p.user_id = u.id
LEFT JOIN {_table(Membership)} m ON m.user_id = u.id AND m.is_active
LEFT JOIN {_table(Organization)} o ON o.id = m.organization_id
LEFT JOIN {_table(Role)} r ON r.id = m.role_id
WHERE u.id = %s
"""  # noqa: S608


def _load_postgresql(user_id: int) -> UserContext | None:
    with connection.cursor() as cursor:
        cursor.execute(_postgresql_sql(), [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    (
        uid, username, email, is_active, is_staff, is_superuser, token_version,
        display_name, org_id, org_active, org_slug, org_name, role_id, role_name,
        perms, zones, sessions, last_ok, last_status,
    ) = row  # fmt: skip
    zones_status, stale_after = _zones_state(last_ok, last_status)
    effective = org_id is not None and bool(org_active)
    return build_context(
        user=_user_public(uid, username, email, display_name, is_staff, is_superuser),
        is_active=is_active,
        token_version=token_version,
        session_ids=list(sessions),
        organization={"id": org_id, "slug": org_slug, "name": org_name} if effective else None,
        role={"id": role_id, "name": role_name} if effective else None,
        membership_organization_id=org_id,
        membership_role_id=role_id,
        permissions=list(perms),
        zones=[(code, name) for code, name in zones],
        zones_status=zones_status,
        zones_stale_after=stale_after,
    )


def _load_portable(user_id: int) -> UserContext | None:
    active = Membership.objects.filter(user=OuterRef("pk"), is_active=True)

    def membership(field: str) -> Subquery:
        return Subquery(active.values(field)[:1])

    row = (
        User.objects.filter(pk=user_id)
        .annotate(
            display_name=F("profile__display_name"),
            org_id=membership("organization_id"),
            org_active=membership("organization__is_active"),
            org_slug=membership("organization__slug"),
            org_name=membership("organization__name"),
            role_id=membership("role_id"),
            role_name=membership("role__name"),
            last_ok=Subquery(
                ZoneSyncRun.objects.filter(status=ZoneSyncRun.Status.OK)
                .order_by("-finished_at")
                .values("finished_at")[:1]
            ),
            last_status=Subquery(
                ZoneSyncRun.objects.exclude(status=ZoneSyncRun.Status.RUNNING)
                .order_by("-started_at")
                .values("status")[:1]
            ),
        )
        .values(
            "id",
            "username",
            "email",
            "is_active",
            "is_staff",
            "is_superuser",
            "token_version",
            "display_name",
            "org_id",
            "org_active",
            "org_slug",
            "org_name",
            "role_id",
            "role_name",
            "last_ok",
            "last_status",
        )
        .first()
    )
    if row is None:
        return None

    def tagged(queryset: Any, kind: str, a: Any, b: Any) -> Any:
        return queryset.order_by().annotate(kind=Value(kind), a=a, b=b).values_list("kind", "a", "b")

    effective = row["org_id"] is not None and bool(row["org_active"])
    superuser = row["is_superuser"] and row["is_active"]
    perm_filter = _Q() if superuser else (_Q(user=user_id) | _Q(group__user=user_id))
    if not superuser and effective:
        perm_filter |= _Q(roles=row["role_id"])
    parts = [tagged(Permission.objects.filter(perm_filter), "p", F("content_type__app_label"), F("codename"))]
    if effective:
        parts.append(tagged(Zone.objects.filter(assignments__organization_id=row["org_id"]), "z", F("code"), F("name")))
    now = timezone.now()
    live = Session.objects.filter(
        user_id=user_id, ended_at__isnull=True, token_version=row["token_version"], expires_at__gt=now
    )
    parts.append(tagged(live, "s", Cast("id", CharField()), Value("")))
    perms: set[str] = set()
    zones: set[tuple[str, str]] = set()
    sessions: list[str] = []
    for kind, a, b in parts[0].union(*parts[1:], all=True):
        if kind == "p":
            perms.add(f"{a}.{b}")
        elif kind == "z":
            zones.add((a, b))
        else:
            sessions.append(str(uuid.UUID(a)))  # stored as 32 hex digits outside PostgreSQL
    zones_status, stale_after = _zones_state(row["last_ok"], row["last_status"])
    return build_context(
        user=_user_public(
            row["id"], row["username"], row["email"], row["display_name"], row["is_staff"], row["is_superuser"]
        ),
        is_active=row["is_active"],
        token_version=row["token_version"],
        session_ids=sessions,
        organization={"id": row["org_id"], "slug": row["org_slug"], "name": row["org_name"]} if effective else None,
        role={"id": row["role_id"], "name": row["role_name"]} if effective else None,
        membership_organization_id=row["org_id"],
        membership_role_id=row["role_id"],
        permissions=list(perms),
        zones=list(zones),
        zones_status=zones_status,
        zones_stale_after=stale_after,
    )


# --------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------


def session_list(*, user_id: int, token_version: int) -> list[Session]:
    """The user's live sessions (not ended, not expired, from the current password), newest first."""
    return list(
        Session.objects.filter(
            user_id=user_id, ended_at__isnull=True, token_version=token_version, expires_at__gt=timezone.now()
        ).order_by("-created_at", "-pk")
    )


def session_of_user(*, user_id: int, session_id: str) -> Session | None:
    """One of the user's sessions (ended or not), or None for an unknown id or another user's."""
    try:
        wanted = uuid.UUID(session_id)
    except ValueError:
        return None
    return Session.objects.filter(user_id=user_id, pk=wanted).first()
