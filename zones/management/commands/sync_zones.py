"""sync_zones: one zone sync now, in the foreground, with its outcome."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from zones.services import SOURCES, zone_sync_exclusive


class Command(BaseCommand):
    help = "Run one zone sync now (in this process) and print rows, skipped rows and duration."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", choices=SOURCES, help="zone source (default: ZONE_SOURCE)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            outcome = zone_sync_exclusive(source=options["source"])
        except Exception as exc:  # one clear line, whatever went wrong
            raise CommandError(f"zone sync failed: {type(exc).__name__}: {exc}") from exc
        if outcome.status == "skipped":
            # Not a failure: another sync holds the lock and is doing the work.
            self.stdout.write(f"zone sync skipped: {outcome.error}")
            return
        if not outcome.ok:
            raise CommandError(f"zone sync failed (run {outcome.run_id}): {outcome.error}")
        self.stdout.write(
            f"zone sync ok: source={outcome.source} rows={outcome.rows} skipped={outcome.skipped} "
            f"duration={outcome.duration:.2f}s run={outcome.run_id} "
            f"assignments=+{outcome.assignments_added}/-{outcome.assignments_removed} "
            f"organizations_changed={outcome.organizations_changed}"
        )
        for reason, count in sorted(outcome.skipped_by_reason.items()):
            self.stdout.write(f"  skipped {reason}: {count}")
