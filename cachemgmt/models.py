"""The audit trail of operator actions on the cache and zones, and the admin's Cache page."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class CacheAuditEntry(models.Model):
    """One clear or zone sync, from whichever entry point (API, admin page, command)."""

    class Action(models.TextChoices):
        CLEAR = "clear"
        ZONE_SYNC = "zone_sync"

    class Source(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        COMMAND = "command"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept apart from ``actor`` so the record survives the user's deletion.
    actor_label = models.CharField(max_length=150)
    source = models.CharField(max_length=16, choices=Source.choices)
    action = models.CharField(max_length=16, choices=Action.choices)
    target = models.CharField(max_length=100)
    result = models.CharField(max_length=200)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "cache audit entry"
        verbose_name_plural = "cache audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.target} by {self.actor_label} ({self.result})"


class CachePage(models.Model):
    """No table: gives the admin index its "Cache" entry (statistics and operator actions)."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "cache"
        verbose_name_plural = "cache"

    def __str__(self) -> str:
        return "cache"


class DependencyChange(models.Model):
    """A committed change to a row cached values depend on, written by the database itself.

    Triggers on every table a cached value is built from (``cachemgmt.capture``) insert one row
    per changed dependency in the writing transaction, so a change of any origin (the ORM,
    ``update()``, raw SQL, another service) is recorded when, and only when, it commits. The
    carrier (``cachemgmt.carrier``) applies them to the cache in id order.
    """

    kind = models.CharField(max_length=16)
    ident = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = "dependency change"

    def __str__(self) -> str:
        return f"{self.kind} {self.ident} at {self.created_at}"
