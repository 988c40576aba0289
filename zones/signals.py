"""Signals zones owns: the apps above it (accounts' cached contexts) learn of snapshot changes here."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the writing transaction when zones change: ``organization_ids`` (their
# assignments changed) and ``every_organization`` (a zone was renamed, or the snapshot's
# status changed, which shows in every context).
zones_changed = Signal()

# Sent by a reader that found the snapshot missing or overdue (``reason``, ``check_snapshot``):
# zones answers by asking for one sync, deduplicated, without making the reader wait.
zone_snapshot_overdue = Signal()
