"""Writes: login, logout, users, memberships and roles (each invalidating what it changed), the access audit."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.context import UserContext
from accounts.dependencies import context_invalidate
from accounts.models import AccessAuditEntry, Membership, Organization, Profile, RevokedToken, Role, User
from accounts.selectors import user_context_get
from accounts.tokens import TokenClaims, token_issue

logger = logging.getLogger("accounts")

REVOCATION_PURGE_MARGIN = 300  # seconds past a revoked token's expiry before its record may go


# --------------------------------------------------------------------------------------
# Login, logout
# --------------------------------------------------------------------------------------


class LoginFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class LoginResult:
    access_token: str
    expires_in: int
    context: UserContext


def auth_login(*, username: str, password: str, client_address: str) -> LoginResult:
    """Check credentials and issue a bearer token.

    Failures are throttled per username and address by the authentication backend, which
    raises ``accounts.throttling.LoginThrottled``. The context is loaded (and cached) by the
    backend, so the first request with the new token is already warm.
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
    token, claims = token_issue(user_id=user.pk, token_version=context.token_version)
    logger.info("login succeeded", extra={"user_id": user.pk})
    return LoginResult(access_token=token, expires_in=claims.expires_at - claims.issued_at, context=context)


@transaction.atomic
def auth_logout(*, claims: TokenClaims, everywhere: bool = False) -> None:
    """End this token, or with ``everywhere`` every token of the user; effective on commit."""
    if everywhere:
        User.objects.filter(pk=claims.user_id).update(token_version=F("token_version") + 1)
    else:
        RevokedToken.objects.get_or_create(
            jti=claims.jti,
            defaults={"user_id": claims.user_id, "expires_at": datetime.fromtimestamp(claims.expires_at, tz=UTC)},
        )
    # The database refuses to delete a revocation whose token still lives (by its own clock):
    # purge only those well past expiry, so a clock difference can never fail a logout.
    purge_before = timezone.now() - timedelta(seconds=REVOCATION_PURGE_MARGIN)
    RevokedToken.objects.filter(user_id=claims.user_id, expires_at__lte=purge_before).delete()
    context_invalidate(user_ids=[claims.user_id])


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
