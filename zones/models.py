"""Zones and the last good snapshot of organization-to-zone mappings."""

from __future__ import annotations

from django.db import models

from cachemgmt.capture import capture


class Zone(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["code"]
        # A zone's name shows in every organization holding it: the global zones key.
        triggers = capture(kind="zones", column=None)

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class ZoneAssignment(models.Model):
    # By name: zones sits below accounts and never imports it.
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="zone_assignments")
    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="assignments")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "zone"], name="unique_zone_assignment")]
        triggers = capture(kind="organization", column="organization_id")

    def __str__(self) -> str:
        return f"{self.organization_id} -> {self.zone_id}"


class ZoneSyncRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        FAILED = "failed"

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    rows = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status", "-finished_at"], name="zonesync_status_finished")]
        # Every context's zones_status follows the runs.
        triggers = capture(kind="zones", column=None)

    def __str__(self) -> str:
        return f"{self.source} sync at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"
