"""cache_stats: what GET /api/admin/cache/stats shows, as a table or (--json) the same JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachemgmt import cache
from cachemgmt.selectors import cache_stats_get


class Command(BaseCommand):
    help = "Show cache statistics (counters cover every process sharing the cache)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the API's JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            stats = cache_stats_get()
        except cache.CacheUnavailable as exc:
            raise CommandError(f"the shared cache cannot be read: {exc}") from None
        if options["json"]:
            self.stdout.write(json.dumps(stats, indent=2))
            return
        self.stdout.write(f"backend: {stats['backend']}   since: {stats['since']}")
        columns = ("hits", "misses", "hit_ratio", "near_hits", "fills", "invalidations", "keys")
        self.stdout.write(f"{'namespace':<14}" + "".join(f"{name:>15}" for name in columns))
        for name, ns in stats["namespaces"].items():
            cells = "".join(f"{'n/a' if ns[c] is None else ns[c]!s:>15}" for c in columns)
            self.stdout.write(f"{name:<14}{cells}")
        sync = stats["namespaces"]["zones"]["last_sync"]
        if sync is None:
            self.stdout.write("last zone sync: never")
        else:
            self.stdout.write(f"last zone sync: {sync['status']}, {sync['rows']} rows, finished {sync['finished_at']}")
        carrier = stats["carrier"]
        lag = "no carrier has run" if carrier["lag_seconds"] is None else f"lag {carrier['lag_seconds']} s"
        self.stdout.write(f"carrier: {lag}, {carrier['pending']} pending, cursor {carrier['cursor']}")
        server = stats["server"]
        if server is not None:
            self.stdout.write(
                f"server: used_memory={server['used_memory']} connected_clients={server['connected_clients']}"
            )
