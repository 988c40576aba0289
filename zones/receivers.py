"""Signal receivers: zone and assignment writes reach the cached contexts (through ``zones_changed``),
and a reader's "snapshot overdue" is answered with one deduplicated sync request."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from zones.models import Zone, ZoneAssignment
from zones.services import zone_sync_request
from zones.signals import zone_snapshot_overdue, zones_changed


def assignment_changed(sender: Any, instance: ZoneAssignment, **_: Any) -> None:
    zones_changed.send(sender=ZoneAssignment, organization_ids=[instance.organization_id], every_organization=False)


def zone_changed(sender: Any, instance: Zone, **_: Any) -> None:
    # A zone's name shows in every organization holding it: one key covers them all.
    zones_changed.send(sender=Zone, organization_ids=[], every_organization=True)


def snapshot_overdue(sender: Any, reason: str, check_snapshot: bool, **_: Any) -> None:
    zone_sync_request(reason=reason, check_snapshot=check_snapshot)


def connect() -> None:
    post_save.connect(assignment_changed, sender=ZoneAssignment, dispatch_uid="ctx-save-zoneassignment")
    post_delete.connect(assignment_changed, sender=ZoneAssignment, dispatch_uid="ctx-delete-zoneassignment")
    post_save.connect(zone_changed, sender=Zone, dispatch_uid="ctx-save-zone")
    post_delete.connect(zone_changed, sender=Zone, dispatch_uid="ctx-delete-zone")
    zone_snapshot_overdue.connect(snapshot_overdue, dispatch_uid="zones-snapshot-overdue")
