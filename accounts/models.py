"""Users, profiles, organizations, roles and memberships: everything a user context is built from."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser, Permission
from django.db import models
from django.db.models import Q


class User(AbstractUser):
    """The custom user; ``token_version`` revokes every bearer token of the user when bumped."""

    token_version = models.PositiveIntegerField(default=0, editable=False)

    def set_password(self, raw_password: str | None) -> None:
        super().set_password(raw_password)
        # A new password ends every session and token issued before it.
        self.token_version = (self.token_version or 0) + 1


class Profile(models.Model):
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="profile")
    display_name = models.CharField(max_length=150, blank=True)
    locale = models.CharField(max_length=16, default="en")
    timezone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return self.display_name or f"profile of user {self.user_id}"


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    name = models.CharField(max_length=100, unique=True)
    permissions = models.ManyToManyField(Permission, blank=True, related_name="roles")

    class Meta:
        ordering = ["name"]

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

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id} as {self.role_id}"

    # Not a field: the user id as loaded, so a membership moved to another user invalidates both.
    _loaded_user_id: int | None = None

    @classmethod
    def from_db(cls, *args: Any, **kwargs: Any) -> Membership:
        instance = super().from_db(*args, **kwargs)
        instance._loaded_user_id = instance.__dict__.get("user_id")
        return instance


class RevokedToken(models.Model):
    """A single bearer token ended by logout; kept until the token would have expired anyway."""

    jti = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="revoked_tokens")
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"], name="revoked_user_expiry")]

    def __str__(self) -> str:
        return f"revoked token of user {self.user_id}"
