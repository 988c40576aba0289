"""The zone sync: pull every mapping from the source, validate it, replace the snapshot as a whole.

The snapshot in ``Zone``/``ZoneAssignment`` is only ever replaced as a whole, in one
transaction, by a sync whose rows passed validation; a failing source or bad data leave the
previous snapshot in place and record the error on the run. Cached contexts learn of a
change through ``zones.signals.zones_changed`` (sent inside the transaction; accounts
bumps their keys when it commits).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection, transaction
from django.utils import timezone

from cachemgmt import cache
from zones.conf import zones_settings
from zones.models import Zone, ZoneAssignment, ZoneSyncRun
from zones.selectors import (
    NAMESPACE,
    PENDING,
    READY,
    STALE,
    organization_zones_load,
    organization_zones_put,
    zone_snapshot_state,
)
from zones.signals import zones_changed
from zones.sources import ZoneRow, ZoneSource, ZoneSourceError, get_source

logger = logging.getLogger("zones")

SOURCES = ("fixture", "bigquery")
MAX_CODE_LENGTH = Zone._meta.get_field("code").max_length or 32
MAX_NAME_LENGTH = Zone._meta.get_field("name").max_length or 200
# Rows per INSERT/DELETE statement: large enough that 100,000 mappings take a few dozen
# statements, small enough to stay under SQLite's bound-variable limit.
BATCH_SIZE = 2000
# Serialises snapshot replacements on PostgreSQL even if the cache lock was lost.
_ADVISORY_LOCK_ID = 0x7A6F6E6573  # "zones"

OK, FAILED, SKIPPED = ZoneSyncRun.Status.OK.value, ZoneSyncRun.Status.FAILED.value, "skipped"
# Why a run failed: the source (transient, worth retrying), the data, or the configuration.
FAILURE_SOURCE, FAILURE_DATA, FAILURE_CONFIG = "source", "data", "config"


@dataclass(frozen=True, slots=True)
class ZoneSyncOutcome:
    """What one sync did; ``str()`` is the one line commands print."""

    status: str  # ok | failed | skipped
    source: str
    run_id: int | None = None
    rows: int = 0  # valid mappings in the snapshot (ok) or read (failed on data)
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    error: str = ""
    failure: str = ""  # "", source, data or config
    duration: float = 0.0
    read_seconds: float = 0.0  # pulling and validating the rows
    write_seconds: float = 0.0  # replacing the snapshot (one transaction)
    zones_created: int = 0
    zones_renamed: int = 0
    zones_deleted: int = 0
    assignments_added: int = 0
    assignments_removed: int = 0
    organizations_changed: int = 0

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def changed(self) -> bool:
        return bool(
            self.zones_created
            or self.zones_renamed
            or self.zones_deleted
            or self.assignments_added
            or self.assignments_removed
        )

    def raise_for_source_error(self) -> None:
        """Raise ``ZoneSourceError`` when the source failed (the task retries those)."""
        if self.failure == FAILURE_SOURCE:
            raise ZoneSourceError(self.error)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.status == SKIPPED:
            return f"skipped: {self.error}"
        if self.status == FAILED:
            return f"failed (source {self.source}, run {self.run_id}): {self.error}"
        return (
            f"ok (source {self.source}, run {self.run_id}): {self.rows} rows, {self.skipped} skipped "
            f"in {self.duration:.2f}s; assignments +{self.assignments_added}/-{self.assignments_removed}, "
            f"zones +{self.zones_created}/~{self.zones_renamed}/-{self.zones_deleted}, "
            f"{self.organizations_changed} organizations changed"
        )


class _Rejected(Exception):
    """The source's data cannot become the snapshot (empty, or too many bad rows)."""


# --------------------------------------------------------------------------------------
# The sync
# --------------------------------------------------------------------------------------


def zone_sync(*, source: str | None = None, now: Callable[[], datetime] = timezone.now) -> ZoneSyncOutcome:
    """Pull every mapping from ``source`` (default ``ZONE_SOURCE``) and replace the snapshot.

    Records a ``ZoneSyncRun`` (running, then ok or failed). Rows with an unknown
    organization slug, an empty or over-long code or name, or repeating an
    (organization, zone) pair are counted, logged and skipped. An empty result, a share of
    bad rows above ``MAX_BAD_ROW_SHARE`` or a source error fail the run and leave the
    previous snapshot untouched.

    On success the snapshot is replaced in one transaction with bulk statements (no
    per-row signals); after commit, contexts of organizations whose zones changed are
    invalidated (one cache round trip, plus the global zones key when a zone was renamed
    or the snapshot's status changed) and their zone cache entries are refilled. A
    failed run invalidates every context (one key) only when it turns the status stale.
    Does not take the sync lock: see ``zone_sync_exclusive``.
    """
    name = (source or str(zones_settings.SOURCE)).strip().lower()
    if name not in SOURCES:
        raise ValueError(f"unknown zone source {name!r}; expected one of: {', '.join(SOURCES)}")
    started = time.monotonic()
    run = ZoneSyncRun.objects.create(started_at=now(), source=name, status=ZoneSyncRun.Status.RUNNING)
    logger.info("zone sync started", extra={"run_id": run.pk, "source": name})
    skipped: Counter[str] = Counter()
    try:
        try:
            zone_source = _source_build(name)
        except (ValueError, TypeError) as exc:
            return _run_fail(run, str(exc), FAILURE_CONFIG, started=started, now=now)
        snapshot = _snapshot_collect(zone_source.fetch(), _organization_ids())
        skipped = snapshot.skipped
        _snapshot_check(snapshot)
        read_done = time.monotonic()
        changes = _snapshot_replace(snapshot, run=run, now=now)
    except ZoneSourceError as exc:
        return _run_fail(run, str(exc), FAILURE_SOURCE, started=started, now=now)
    except _Rejected as exc:
        return _run_fail(run, str(exc), FAILURE_DATA, started=started, now=now, snapshot=snapshot)
    except BaseException as exc:
        # Anything else (the database, a bug) is recorded too, then surfaces to the caller.
        try:
            _run_fail(run, f"unexpected {type(exc).__name__}: {exc}", FAILURE_CONFIG, started=started, now=now)
        except Exception:  # the original error is the one worth raising
            logger.exception("zone sync: could not record the failed run", extra={"run_id": run.pk})
        raise
    outcome = ZoneSyncOutcome(
        status=OK,
        source=name,
        run_id=run.pk,
        rows=len(snapshot.assignments),
        skipped=sum(skipped.values()),
        skipped_by_reason=dict(skipped),
        duration=time.monotonic() - started,
        read_seconds=read_done - started,
        write_seconds=time.monotonic() - read_done,
        zones_created=changes.zones_created,
        zones_renamed=changes.zones_renamed,
        zones_deleted=changes.zones_deleted,
        assignments_added=changes.assignments_added,
        assignments_removed=changes.assignments_removed,
        organizations_changed=changes.organizations_changed,
    )
    logger.info("zone sync finished", extra=outcome.as_dict())
    return outcome


def _source_build(name: str) -> ZoneSource:
    if name == "bigquery":
        return get_source(
            name,
            project=zones_settings.BIGQUERY_PROJECT,
            table=zones_settings.BIGQUERY_ZONE_TABLE,
            api_endpoint=zones_settings.BIGQUERY_API_ENDPOINT,
            timeout=float(zones_settings.BIGQUERY_TIMEOUT),
            page_size=int(zones_settings.BIGQUERY_PAGE_SIZE),
        )
    return get_source(name)


def _organization_ids() -> dict[str, int]:
    # The organization model through the assignment's own foreign key: zones sits below accounts.
    organizations = ZoneAssignment._meta.get_field("organization").related_model
    return dict(organizations._default_manager.values_list("slug", "pk"))


@dataclass
class _Snapshot:
    zone_names: dict[str, str] = field(default_factory=dict)  # code -> name
    assignments: set[tuple[int, str]] = field(default_factory=set)  # (organization id, code)
    total: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    name_conflicts: int = 0


def _snapshot_collect(rows: Iterable[ZoneRow], organizations: dict[str, int]) -> _Snapshot:
    """Validate rows as they stream in; only the valid mappings are kept in memory."""
    snapshot = _Snapshot()
    samples: list[str] = []
    for row in rows:
        snapshot.total += 1
        organization_id = organizations.get(row.organization_slug)
        code, name = row.zone_code, row.zone_name
        if organization_id is None:
            reason = "unknown_organization"
        elif not code or len(code) > MAX_CODE_LENGTH:
            reason = "invalid_code"
        elif not name or len(name) > MAX_NAME_LENGTH:
            reason = "invalid_name"
        elif (organization_id, code) in snapshot.assignments:
            reason = "duplicate"
        else:
            snapshot.assignments.add((organization_id, code))
            known = snapshot.zone_names.get(code)
            if known is None:
                snapshot.zone_names[code] = name
            elif known != name:
                # Rows disagree on a zone's name: the smallest wins, so the outcome does not
                # depend on the order the source returns rows in.
                snapshot.name_conflicts += 1
                snapshot.zone_names[code] = min(known, name)
            continue
        snapshot.skipped[reason] += 1
        if len(samples) < 5:
            samples.append(f"{reason}: {row.organization_slug[:64]!r} {code[:64]!r}")
    if snapshot.skipped or snapshot.name_conflicts:
        logger.warning(
            "zone sync skipped rows",
            extra={
                "rows": snapshot.total,
                "skipped": dict(snapshot.skipped),
                "name_conflicts": snapshot.name_conflicts,
                "samples": samples,
            },
        )
    return snapshot


def _snapshot_check(snapshot: _Snapshot) -> None:
    if snapshot.total == 0:
        raise _Rejected("the source returned no rows; keeping the previous snapshot")
    bad = sum(snapshot.skipped.values())
    limit = float(zones_settings.MAX_BAD_ROW_SHARE)
    if not snapshot.assignments or bad / snapshot.total > limit:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(snapshot.skipped.items()))
        raise _Rejected(
            f"{bad} of {snapshot.total} rows are bad ({reasons}), more than the allowed "
            f"{limit:.0%}; keeping the previous snapshot"
        )


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class _Changes:
    zones_created: int
    zones_renamed: int
    zones_deleted: int
    assignments_added: int
    assignments_removed: int
    organizations_changed: int


def _snapshot_replace(snapshot: _Snapshot, *, run: ZoneSyncRun, now: Callable[[], datetime]) -> _Changes:
    """Diff the valid mappings against the tables and apply the difference in one transaction."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_ID])
        status_before = zone_snapshot_state(now=now).status

        current_zones = {code: (pk, name) for pk, code, name in Zone.objects.values_list("pk", "code", "name")}
        created = [
            Zone(code=code, name=name) for code, name in snapshot.zone_names.items() if code not in current_zones
        ]
        renamed = [
            Zone(pk=current_zones[code][0], code=code, name=name)
            for code, name in snapshot.zone_names.items()
            if code in current_zones and current_zones[code][1] != name
        ]
        obsolete = [pk for code, (pk, _) in current_zones.items() if code not in snapshot.zone_names]
        # bulk_create/bulk_update send no signals; invalidation is explicit, below.
        Zone.objects.bulk_create(created, batch_size=BATCH_SIZE)
        Zone.objects.bulk_update(renamed, ["name"], batch_size=BATCH_SIZE)
        zone_ids = {code: pk for code, (pk, _) in current_zones.items()}
        zone_ids.update((zone.code, zone.pk) for zone in created)
        if any(pk is None for pk in zone_ids.values()):  # a backend that returns no ids
            zone_ids = dict(Zone.objects.values_list("code", "pk"))

        wanted = {(organization_id, zone_ids[code]) for organization_id, code in snapshot.assignments}
        current = {
            (organization_id, zone_id): pk
            for pk, organization_id, zone_id in ZoneAssignment.objects.values_list("pk", "organization_id", "zone_id")
        }
        added = sorted(wanted - current.keys())
        removed = [(key, pk) for key, pk in current.items() if key not in wanted]
        _assignments_insert(added)
        # A queryset .delete() would fetch the rows and send post_delete per row (one
        # on-commit invalidation each); _raw_delete is one DELETE per batch and no signals.
        for batch in _chunks([pk for _, pk in removed]):
            ZoneAssignment.objects.filter(pk__in=batch)._raw_delete(ZoneAssignment.objects.db)
        # Zones gone from the source: their assignments were removed just above.
        for batch in _chunks(obsolete):
            Zone.objects.filter(pk__in=batch)._raw_delete(Zone.objects.db)

        ZoneSyncRun.objects.filter(pk=run.pk).update(
            status=ZoneSyncRun.Status.OK,
            finished_at=now(),
            rows=len(snapshot.assignments),
            skipped=sum(snapshot.skipped.values()),
            error="",
        )
        changed_organizations = sorted({key[0] for key in added} | {key[0] for key, _ in removed})
        # Renamed zones show in every organization holding them: the global zones key covers
        # them in one bump, as does a status change (pending/stale -> ready).
        zones_changed.send(
            sender=ZoneSyncRun,
            organization_ids=changed_organizations,
            every_organization=bool(renamed) or status_before != READY,
        )
        if changed_organizations:
            transaction.on_commit(lambda: zone_cache_refresh(organization_ids=changed_organizations), robust=True)
    return _Changes(
        zones_created=len(created),
        zones_renamed=len(renamed),
        zones_deleted=len(obsolete),
        assignments_added=len(added),
        assignments_removed=len(removed),
        organizations_changed=len(changed_organizations),
    )


def _assignments_insert(pairs: Sequence[tuple[int, int]]) -> None:
    """Insert (organization id, zone id) rows without signals, in as few statements as is sane."""
    if connection.vendor != "postgresql":
        ZoneAssignment.objects.bulk_create(
            [ZoneAssignment(organization_id=organization_id, zone_id=zone_id) for organization_id, zone_id in pairs],
            batch_size=BATCH_SIZE,
        )
        return
    # Two arrays per statement instead of two parameters per row: no model instances, no
    # 100,000-placeholder statements to build, parse and bind.
    table = connection.ops.quote_name(ZoneAssignment._meta.db_table)
    sql = f"INSERT INTO {table} (organization_id, zone_id) SELECT * FROM unnest(%s::bigint[], %s::bigint[])"  # noqa: S608 - table name from the model
    with connection.cursor() as cursor:
        for batch in _chunks(pairs, size=50_000):
            cursor.execute(sql, [[pair[0] for pair in batch], [pair[1] for pair in batch]])


def _run_fail(
    run: ZoneSyncRun,
    error: str,
    failure: str,
    *,
    started: float,
    now: Callable[[], datetime],
    snapshot: _Snapshot | None = None,
) -> ZoneSyncOutcome:
    rows = len(snapshot.assignments) if snapshot else 0
    skipped = dict(snapshot.skipped) if snapshot else {}
    with transaction.atomic():
        status_before = zone_snapshot_state(now=now).status
        ZoneSyncRun.objects.filter(pk=run.pk).update(
            status=ZoneSyncRun.Status.FAILED,
            finished_at=now(),
            rows=rows,
            skipped=sum(skipped.values()),
            error=error,
        )
        # Contexts keep their zones; only zones_status changes (ready -> stale): one key.
        status_after = PENDING if status_before == PENDING else STALE
        if status_after != status_before:
            zones_changed.send(sender=ZoneSyncRun, organization_ids=[], every_organization=True)
    outcome = ZoneSyncOutcome(
        status=FAILED,
        source=run.source,
        run_id=run.pk,
        rows=rows,
        skipped=sum(skipped.values()),
        skipped_by_reason=skipped,
        error=error,
        failure=failure,
        duration=time.monotonic() - started,
    )
    logger.error("zone sync failed", extra=outcome.as_dict())
    return outcome


def zone_cache_refresh(*, organization_ids: Sequence[int]) -> None:
    """Refill the zone cache of these organizations (after the sync's invalidation committed).

    One clock read serves every fill: it is taken after the invalidation and before the
    database read, which is all a fill's ticket must guarantee.
    """
    ticket: int | None = None
    for organization_id in organization_ids[:3]:
        result = cache.entry_get(NAMESPACE, organization_id, single_flight=False)
        if isinstance(result, cache.Miss):
            ticket = result.ticket
            break
    if ticket is None:
        return
    miss = cache.Miss(ticket=ticket, leader=True)
    for batch in _chunks(organization_ids):
        zones = organization_zones_load(organization_ids=batch)
        for organization_id in batch:
            organization_zones_put(organization_id=organization_id, zones=zones.get(organization_id, []), miss=miss)
