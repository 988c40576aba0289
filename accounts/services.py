"""Writes: login, logout, users, memberships and roles (each invalidating what it changed), the access audit."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone

from accounts.dependencies import context_invalidate
from accounts.models import AccessAuditEntry, Membership, Organization, Profile, Role, User
from accounts.selectors import user_context_get
from accounts.sessions import (
    EndReason,
    IssuedSession,
    SessionGone,
    session_start,
    sessions_end,
    sessions_end_everyone,
)
from accounts.tokens import TokenClaims

logger = logging.getLogger("accounts")

# --------------------------------------------------------------------------------------
# Login, logout
# --------------------------------------------------------------------------------------


class LoginFailed(Exception):
    pass


def auth_login(*, username: str, password: str, client_address: str, device: str = "") -> IssuedSession:
    """Check credentials and open a session: an access token, a refresh token and the context.

    Failures are throttled per username and address by the authentication backend, which
    raises ``accounts.throttling.LoginThrottled``. The context returned lists the new
    session, so the first request with the new token is already warm.
    """
    user = authenticate(request=None, username=username.strip(), password=password, address=client_address)
    if user is None:
        logger.info("login failed", extra={"reason": "credentials"})
        raise LoginFailed("Invalid username or password.")
    context = user_context_get(user_id=user.pk)
    if context is None or not context.is_active:
        raise LoginFailed("Invalid username or password.")
    # last_login is not part of the context: update it without a save() that would invalidate.
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    try:
        # The context's token version: the database's (a password rehash at this login
        # changes the instance's, not the stored one).
        issued = session_start(
            user_id=user.pk, token_version=context.token_version, device=device, ip=_ip_or_none(client_address)
        )
    except SessionGone:  # deactivated or its password changed during this login
        raise LoginFailed("Invalid username or password.") from None
    logger.info("login succeeded", extra={"user_id": user.pk})
    return issued


def _ip_or_none(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def auth_logout(*, claims: TokenClaims, everywhere: bool = False) -> int:
    """End the session of this token, or with ``everywhere`` every session of the user."""
    return sessions_end(
        user_id=claims.user_id,
        session_ids=None if everywhere else [claims.session_id],
        reason=EndReason.LOGOUT_ALL if everywhere else EndReason.LOGOUT,
    )


# --------------------------------------------------------------------------------------
# Users, memberships and roles (the project's own write paths, bulk ones included)
# --------------------------------------------------------------------------------------


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str | None,
    email: str = "",
    display_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    user.set_password(password)
    user.save()
    Profile.objects.create(user=user, display_name=display_name or username)
    return user


@transaction.atomic
def user_set_active(*, user_id: int, is_active: bool) -> None:
    User.objects.filter(pk=user_id).update(is_active=is_active)
    context_invalidate(user_ids=[user_id])


@transaction.atomic
def user_set_password(*, user_id: int, password: str) -> None:
    """A new password revokes every token of the user (token_version is bumped by set_password)."""
    user = User.objects.select_for_update().get(pk=user_id)
    user.set_password(password)
    user.save(update_fields=["password", "token_version"])


@transaction.atomic
def profile_update(*, user_id: int, **fields: Any) -> Profile:
    allowed = {"display_name", "locale", "timezone"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown profile fields: {', '.join(sorted(unknown))}")
    profile, _ = Profile.objects.get_or_create(user_id=user_id)
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.save()
    return profile


@transaction.atomic
def membership_set(*, user_id: int, organization_id: int, role_id: int) -> Membership:
    """Make this the user's one active membership (any other active one is deactivated)."""
    Membership.objects.filter(user_id=user_id, is_active=True).exclude(organization_id=organization_id).update(
        is_active=False
    )
    membership, _ = Membership.objects.update_or_create(
        user_id=user_id, organization_id=organization_id, defaults={"role_id": role_id, "is_active": True}
    )
    context_invalidate(user_ids=[user_id])
    return membership


@transaction.atomic
def membership_deactivate(*, user_id: int) -> int:
    changed = Membership.objects.filter(user_id=user_id, is_active=True).update(is_active=False)
    context_invalidate(user_ids=[user_id])
    return changed


@transaction.atomic
def membership_bulk_change_role(*, organization_id: int, from_role_id: int, to_role_id: int) -> int:
    """Move every member of an organization from one role to another: one UPDATE, one bump."""
    changed = Membership.objects.filter(organization_id=organization_id, role_id=from_role_id).update(
        role_id=to_role_id
    )
    # Many users at once: the organization's key covers every member in O(1).
    context_invalidate(organization_ids=[organization_id])
    return changed


@transaction.atomic
def organization_set_active(*, organization_id: int, is_active: bool) -> None:
    Organization.objects.filter(pk=organization_id).update(is_active=is_active)
    context_invalidate(organization_ids=[organization_id])


@transaction.atomic
def role_set_permissions(*, role_id: int, permission_codes: Iterable[str]) -> Role:
    """Replace a role's permissions (``app_label.codename``); every holder sees it on commit."""
    role = Role.objects.get(pk=role_id)
    wanted: list[Permission] = []
    for code in permission_codes:
        app_label, _, codename = code.partition(".")
        wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    role.permissions.set(wanted)  # m2m_changed invalidates the role
    return role


# --------------------------------------------------------------------------------------
# The audit of access changes
# --------------------------------------------------------------------------------------


def access_audit_record(*, actor: Any, target: str, changes: list[str]) -> AccessAuditEntry | None:
    """Record who changed what someone may do; nothing when nothing changed."""
    if not changes:
        return None
    label = str(actor.get_username()) if actor is not None else "system"
    entry = AccessAuditEntry.objects.create(
        actor_id=getattr(actor, "pk", None), actor_label=label[:150], target=target[:200], change="; ".join(changes)
    )
    logger.info("access changed", extra={"actor": label, "target": target, "change": entry.change})
    return entry


def describe_set_change(name: str, before: Iterable[str], after: Iterable[str]) -> list[str]:
    """``["permissions: +a.b, -c.d"]``, or nothing when the two sets are equal."""
    added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
    if not added and not removed:
        return []
    return [f"{name}: " + ", ".join([*(f"+{item}" for item in added), *(f"-{item}" for item in removed)])]


# --------------------------------------------------------------------------------------
# Forced sign-outs (staff, operators)
# --------------------------------------------------------------------------------------


def sessions_revoke_user(*, username: str, actor: Any = None) -> int:
    """End every session of a user (``revoke_tokens --user``), in the access audit; raises LookupError."""
    user = User.objects.filter(username=username).first()
    if user is None:
        raise LookupError(f"no user named {username!r}")
    ended = sessions_end(user_id=user.pk, reason=EndReason.STAFF)
    access_audit_record(actor=actor, target=f"user {username}", changes=[f"signed out everywhere ({ended} sessions)"])
    return ended


def sessions_revoke_all(*, actor: Any = None) -> int:
    """The incident switch (``revoke_tokens --all``): every session of every user ends, audited."""
    ended = sessions_end_everyone(reason=EndReason.INCIDENT)
    access_audit_record(actor=actor, target="every user", changes=[f"signed out everywhere ({ended} sessions)"])
    return ended
