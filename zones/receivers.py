"""Signal receivers: zone and assignment writes reach the cached contexts (on commit)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from accounts.services import context_invalidate
from zones.models import Zone, ZoneAssignment


def assignment_changed(sender: Any, instance: ZoneAssignment, **_: Any) -> None:
    context_invalidate(organization_ids=[instance.organization_id])


def zone_changed(sender: Any, instance: Zone, **_: Any) -> None:
    # A zone's name shows in every organization holding it: one key covers them all.
    context_invalidate(zones=True)


def connect() -> None:
    post_save.connect(assignment_changed, sender=ZoneAssignment, dispatch_uid="ctx-save-zoneassignment")
    post_delete.connect(assignment_changed, sender=ZoneAssignment, dispatch_uid="ctx-delete-zoneassignment")
    post_save.connect(zone_changed, sender=Zone, dispatch_uid="ctx-save-zone")
    post_delete.connect(zone_changed, sender=Zone, dispatch_uid="ctx-delete-zone")
