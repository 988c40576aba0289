"""Users, profiles, organizations, roles and memberships: everything a user context is built from."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import F, Q

from cachemgmt.capture import capture


class User(AbstractUser):
    """The custom user; ``token_version`` revokes every bearer token of the user when bumped."""

    token_version = models.PositiveIntegerField(default=0, editable=False)

    def set_password(self, raw_password: str | None) -> None:
        super().set_password(raw_password)
        # A new password ends every session and token issued before it.
        self.token_version = (self.token_version or 0) + 1

    class Meta(AbstractUser.Meta):
        # Logins update last_login only: that is no change to the context. (A token version
        # never decreases: accounts.history.)
        triggers = capture(kind="user", column="id", ignore=("last_login",))


class Profile(models.Model):
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="profile")
    display_name = models.CharField(max_length=150, blank=True)
    locale = models.CharField(max_length=16, default="en")
    timezone = models.CharField(max_length=64, default="UTC")

    class Meta:
        triggers = capture(kind="user", column="user_id")

    def __str__(self) -> str:
        return self.display_name or f"profile of user {self.user_id}"


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["slug"]
        triggers = capture(kind="organization", column="id")

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    name = models.CharField(max_length=100, unique=True)
    permissions = models.ManyToManyField(Permission, blank=True, related_name="roles")

    class Meta:
        ordering = ["name"]
        triggers = capture(kind="role", column="id")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="memberships")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # The context query joins the single active membership by user id; this partial
            # unique index both enforces "at most one" and serves that join.
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_active=True), name="one_active_membership_per_user"
            ),
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_user_and_org"),
        ]
        indexes = [models.Index(fields=["organization", "is_active"], name="membership_org_active")]
        triggers = capture(kind="user", column="user_id")

    def __str__(self) -> str:
        # Names where they are loaded already (the admin's lists select them), ids otherwise:
        # printing a membership never costs a query.
        loaded = self._state.fields_cache
        user, organization, role = loaded.get("user"), loaded.get("organization"), loaded.get("role")
        who = user.get_username() if user else self.user_id
        where = organization.name if organization else self.organization_id
        return f"{who} in {where} as {role.name if role else self.role_id}"

    # Not a field: the user id as loaded, so a membership moved to another user invalidates both.
    _loaded_user_id: int | None = None

    @classmethod
    def from_db(cls, *args: Any, **kwargs: Any) -> Membership:
        instance = super().from_db(*args, **kwargs)
        instance._loaded_user_id = instance.__dict__.get("user_id")
        return instance


class Session(models.Model):
    """One signed-in device: its refresh token (as a hash), its lifetimes and, once ended, why.

    Access tokens name their session; a cached context carries the ids of its user's live
    sessions, so ending one ends its access tokens on the next request. History, protected by
    the database (``accounts.history``): an ended session never changes again.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sessions")
    device = models.CharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField()
    # Sliding: each refresh moves it, never past max_expires_at. An access token never outlives it.
    expires_at = models.DateTimeField()
    max_expires_at = models.DateTimeField()
    # The user's token version at login: a password change bumps the user's, ending the session.
    token_version = models.PositiveIntegerField()
    # SHA-256 of the current refresh token; the token itself is never stored.
    refresh_hash = models.CharField(max_length=64, unique=True)
    refreshed_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "ended_at", "expires_at"], name="session_user_live")]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__lte=F("max_expires_at")), name="session_within_max_age")
        ]
        # A context lists its user's live sessions: starting and ending one changes it; a
        # refresh (new hash, sliding expiry, last use) does not.
        triggers = capture(
            kind="user", column="user_id", ignore=("last_used_at", "expires_at", "refresh_hash", "refreshed_at")
        )

    def __str__(self) -> str:
        return f"session {self.device or 'unnamed device'} of user {self.user_id}"


class RetiredRefreshToken(models.Model):
    """A refresh token replaced by its successor: presented again, it gives itself away (reuse).

    Not part of any context. Kept, read-only, as long as its session: deleting one would turn
    a reuse into a mere unknown token.
    """

    token_hash = models.CharField(max_length=64, primary_key=True)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="retired_refresh_tokens")
    retired_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"retired refresh token of {self.session_id}"


class RevokedToken(models.Model):
    """Legacy: how the previous release revoked single tokens (sessions replace it).

    Neither read nor written here any more. It stays one release so that processes of the
    previous release keep working during a rolling deploy (they read it on every cold
    context load); the next release drops it. Its rows stay protected (``accounts.history``).
    """

    jti = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="revoked_tokens")
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"], name="revoked_user_expiry")]
        triggers = capture(kind="user", column="user_id")

    def __str__(self) -> str:
        return f"legacy revoked token of user {self.user_id}"


class AccessAuditEntry(models.Model):
    """One change to what someone may do (superuser or staff status, groups, permissions, a
    role's or a group's grants, a membership): who made it and what changed. Read-only history."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept apart from ``actor`` so the record survives the actor's deletion.
    actor_label = models.CharField(max_length=150)
    target = models.CharField(max_length=200)
    change = models.TextField()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "access audit entry"
        verbose_name_plural = "access audit entries"

    def __str__(self) -> str:
        return f"{self.target}: {self.change} (by {self.actor_label})"


# Change capture on the tables the project does not declare itself (Django's permissions and
# groups, and the many-to-many tables): proxies carry their triggers (``cachemgmt.capture``).


class RolePermissionCapture(Role.permissions.through):  # type: ignore[misc,name-defined]
    class Meta:
        proxy = True
        default_permissions = ()
        triggers = capture(kind="role", column="role_id")


class UserGroupCapture(User.groups.through):  # type: ignore[misc,name-defined]
    class Meta:
        proxy = True
        default_permissions = ()
        triggers = capture(kind="user", column="user_id")


class UserPermissionCapture(User.user_permissions.through):  # type: ignore[misc,name-defined]
    class Meta:
        proxy = True
        default_permissions = ()
        triggers = capture(kind="user", column="user_id")


class PermissionCapture(Permission):
    """A permission's name or code shows in every context holding it: the global key."""

    class Meta:
        proxy = True
        default_permissions = ()
        triggers = capture(kind="permissions", column=None)


class GroupCapture(Group):
    class Meta:
        proxy = True
        default_permissions = ()
        triggers = capture(kind="permissions", column=None)


class ContentTypeCapture(ContentType):
    """Permission codes read their app label from here."""

    class Meta:
        proxy = True
        default_permissions = ()
        triggers = capture(kind="permissions", column=None)


class GroupPermissionCapture(Group.permissions.through):  # type: ignore[misc,name-defined]
    """A group's permissions reach every member: the global key (as the signal path does)."""

    class Meta:
        proxy = True
        default_permissions = ()
        triggers = capture(kind="permissions", column=None)
