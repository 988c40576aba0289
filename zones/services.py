"""Writes: running and scheduling zone syncs (locked runs, queued tasks, deduplicated requests, staff starts).

Requests never sync: they may only ask for one (``zone_sync_request``), and at most one such
ask per interval is sent. The sync itself is ``zones.sync.zone_sync``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

from celery import current_app
from django.db import transaction

from cachemgmt import cache
from cachemgmt.models import CacheAuditEntry
from cachemgmt.services import Actor, audit_record, outcome_summary
from zones.conf import zones_settings
from zones.selectors import READY, zone_snapshot_state
from zones.sync import SKIPPED, SOURCES, ZoneSyncOutcome, zone_sync

__all__ = ["SOURCES", "ZoneSyncOutcome", "zone_sync"]  # re-exported: the sync's entry points live here

logger = logging.getLogger("zones")

# Every sync of every process takes this lock (see ``zone_sync_exclusive``).
SYNC_LOCK = "zone-sync"
# Marks "a request already asked for a sync in this interval" (see ``zone_sync_request``).
REQUEST_MARKER = "zone-sync-request"
# Claimed by the scheduled sync of an interval (see ``zone_sync_scheduled``).
SCHEDULE_CLAIM = "zone-sync-scheduled"
# A scheduled sync claims its interval for this share of it: a second beat's tick in the same
# interval finds the claim; the next interval's first tick finds it expired.
SCHEDULE_CLAIM_SHARE = 0.9

# --------------------------------------------------------------------------------------
# Running and scheduling syncs
# --------------------------------------------------------------------------------------


def zone_sync_exclusive(*, source: str | None = None) -> ZoneSyncOutcome:
    """``zone_sync`` under the lock shared by every worker, beat and command.

    A sync started while another holds the lock backs off at once with a "skipped"
    outcome. The lock expires after ``SYNC_LOCK_TTL`` should its holder die.
    """
    try:
        token = cache.lock_acquire(SYNC_LOCK, ttl=int(zones_settings.SYNC_LOCK_TTL))
    except Exception:  # noqa: BLE001 - without the cache, the database lock still serialises
        logger.warning("zone sync lock unavailable (cache down): syncing without it")
        return zone_sync(source=source)
    if token is None:
        logger.info("zone sync skipped: another sync holds the lock")
        return ZoneSyncOutcome(
            status=SKIPPED,
            source=source or str(zones_settings.SOURCE),
            error="another zone sync is running",
        )
    try:
        return zone_sync(source=source)
    finally:
        try:
            cache.lock_release(SYNC_LOCK, token)
        except Exception:  # noqa: BLE001 - it expires on its own
            logger.warning("zone sync lock not released (cache down); it expires on its own")


def zone_sync_scheduled(*, source: str | None = None) -> ZoneSyncOutcome:
    """The scheduled sync: one per interval however many beats send it.

    Beat is not a single point of failure when two run (on two hosts), but each sends its own
    tick: the first tick of an interval claims it for 0.9 of it and syncs; any other tick in
    the claim is skipped. Without the cache the claim cannot be checked, and the sync runs
    (the sync lock and the database still serialise).
    """
    interval = float(zones_settings.SYNC_INTERVAL)
    try:
        claim = cache.lock_acquire(SCHEDULE_CLAIM, ttl=interval * SCHEDULE_CLAIM_SHARE)
    except Exception:  # noqa: BLE001 - an extra sync is better than none
        logger.warning("scheduled zone sync claim unavailable (cache down): syncing anyway")
        claim = ""
    if claim is None:
        logger.info("scheduled zone sync skipped: already run in this interval")
        return ZoneSyncOutcome(
            status=SKIPPED,
            source=source or str(zones_settings.SOURCE),
            error="already run in this interval",
        )
    return zone_sync_exclusive(source=source)


def zone_sync_inline() -> ZoneSyncOutcome:
    """One sync now, in this process (seed_demo); the outcome prints as one line."""
    return zone_sync_exclusive()


def _tasks_run_inline() -> bool:
    """True without a broker (the demo): Celery then runs tasks in the caller."""
    return bool(current_app.conf.task_always_eager)


def _send(*, source: str | None = None, reason: str = "") -> None:
    from zones.tasks import zone_sync_task

    zone_sync_task.apply_async(kwargs={"source": source} if source else {})
    logger.info("zone sync queued", extra={"source": source, "reason": reason})


def zone_sync_enqueue(*, source: str | None = None) -> dict[str, Any]:
    """Ask for a sync now (``POST /api/admin/zones/sync``).

    With a broker the task is queued once the current transaction commits:
    ``{"status": "queued"}``. Without one (the demo) the sync runs here and its outcome is
    returned (``status`` ok, failed or skipped, with its counts).
    """
    if _tasks_run_inline():
        return zone_sync_exclusive(source=source).as_dict()
    transaction.on_commit(lambda: _send_or_retry_later(source=source, reason="requested"), robust=True)
    return {"status": "queued"}


# A sync the broker could not take is sent again every few seconds from a background thread,
# until the next scheduled one would supersede it.
RESEND_SECONDS = 2.0


def _send_or_retry_later(*, source: str | None, reason: str) -> None:
    try:
        _send(source=source, reason=reason)
    except Exception:  # noqa: BLE001 - the broker is unreachable: the request must not wait for it
        logger.warning("zone sync not queued yet: broker unreachable, retrying in the background")
        deadline = time.monotonic() + int(zones_settings.SYNC_INTERVAL)
        kwargs = {"source": source, "reason": reason, "deadline": deadline}
        threading.Thread(target=_resend_until, kwargs=kwargs, name="zone-sync-resend", daemon=True).start()


def _resend_until(*, source: str | None, reason: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        time.sleep(RESEND_SECONDS)
        try:
            _send(source=source, reason=reason)
            return
        except Exception:  # still unreachable: try again
            logger.debug("zone sync still not queued", exc_info=True)
    logger.error("zone sync request dropped: broker unreachable; the next scheduled sync replaces it")


def zone_sync_request(*, reason: str, check_snapshot: bool = True) -> bool:
    """A reader found the snapshot missing or overdue: enqueue one sync, not one per request.

    The first caller in a ``SYNC_INTERVAL`` window takes a marker in the shared cache and,
    when the snapshot really is not ready and no sync is running, sends the task from a
    background thread after commit, so the request never waits for the broker or the sync.
    Without a broker nothing is sent: requests never sync inline. Returns True when sent.
    A caller that has just read the snapshot's state (a context fill) passes
    ``check_snapshot=False`` to keep its one-statement budget; the task's own lock still
    keeps a second sync from running.
    """
    if _tasks_run_inline():
        return False
    try:
        token = cache.lock_acquire(REQUEST_MARKER, ttl=int(zones_settings.SYNC_INTERVAL))
    except Exception:  # noqa: BLE001 - the beat schedule still syncs
        return False
    if token is None:
        return False
    state = zone_snapshot_state() if check_snapshot else None
    if state is not None and (state.status == READY or state.running):
        # Nothing to ask for (a newer sync already landed, or one is under way).
        cache.lock_release(REQUEST_MARKER, token)
        return False

    def send() -> None:
        # The thread runs in a copy of this context so the task carries the request's id.
        run = contextvars.copy_context().run
        thread = threading.Thread(
            target=run, args=(_send_logged,), kwargs={"reason": reason}, name="zone-sync-request", daemon=True
        )
        thread.start()

    transaction.on_commit(send, robust=True)
    return True


def _send_logged(*, reason: str) -> None:
    try:
        _send(reason=reason)
    except Exception:  # a background send must not die silently
        logger.exception("zone sync request could not be queued", extra={"reason": reason})


def zone_sync_preload() -> bool:
    """At worker start: queue a sync when the snapshot is missing or older than the interval."""
    state = zone_snapshot_state()
    if not (state.missing or state.older_than(int(zones_settings.SYNC_INTERVAL))):
        return False
    _send(reason="worker start")
    return True


# --------------------------------------------------------------------------------------
# Staff starts (API, the admin's Cache page), audited
# --------------------------------------------------------------------------------------


def _sync_outcome(outcome: Any) -> dict[str, Any]:
    """``zone_sync_enqueue``'s answer as JSON: ``{"status": "queued"}``, or the inline run's outcome."""
    if outcome is None:
        return {"status": "queued"}
    if isinstance(outcome, dict):
        return {"status": "queued", **outcome}
    if hasattr(outcome, "as_dict"):
        return {"status": "done", **outcome.as_dict()}
    result: dict[str, Any] = {"status": str(getattr(outcome, "status", "done"))}
    for name in ("rows", "error"):
        value = getattr(outcome, name, None)
        if value not in (None, ""):
            result[name] = value
    return result


def zone_sync_start(*, actor: Actor, source: str) -> dict[str, Any]:
    """Queue one zone sync for a staff member (with no broker it runs inline and its outcome is
    returned); every start is in the cache audit trail."""
    try:
        outcome = _sync_outcome(zone_sync_enqueue())
    except Exception as exc:
        logger.exception("zone sync could not be started")
        audit_record(
            actor=actor,
            source=source,
            action=CacheAuditEntry.Action.ZONE_SYNC,
            target="zones",
            result=f"error: {type(exc).__name__}",
        )
        raise
    audit_record(
        actor=actor,
        source=source,
        action=CacheAuditEntry.Action.ZONE_SYNC,
        target="zones",
        result=outcome_summary(outcome),
    )
    return outcome
