"""seed_demo: demo organizations, roles, zones, users and one staff admin; prints credentials."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.demo import demo_seed
from zones.selectors import zone_snapshot_exists
from zones.services import zone_sync_inline

DEFAULT_PASSWORD = "demo-pass-2026"  # noqa: S105 - printed demo credentials, by design


class Command(BaseCommand):
    help = "Create (or refresh) demo data and print the credentials. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=3, help="number of demo users besides the admin")
        parser.add_argument("--password", default=DEFAULT_PASSWORD, help="password for every demo user")
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="run although DEBUG is off (the demo admin is a superuser with a printed password)",
        )
        parser.add_argument(
            "--reset-existing",
            action="store_true",
            help="make existing users of the demo names demo users again, with --password",
        )
        parser.add_argument(
            "--replace-zones", action="store_true", help="sync the bundled zones even over an existing snapshot"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users, password = options["users"], options["password"]
        if users < 0 or users > 100_000:
            raise CommandError("--users must be between 0 and 100000")
        if len(password) < 8:
            raise CommandError("--password must be at least 8 characters")
        if not settings.DEBUG and not options["allow_production"]:
            raise CommandError(
                "seed_demo creates a superuser with a published password: it runs with DEBUG=1 only "
                "(or --allow-production, against a database you mean to fill with demo data)"
            )
        credentials = demo_seed(users=users, password=password, reset_existing=options["reset_existing"])
        if options["replace_zones"] or not zone_snapshot_exists():
            self.stdout.write(f"zones: {zone_sync_inline()}")
        else:
            self.stdout.write("zones: an existing snapshot is kept (--replace-zones syncs the bundled sample over it)")
        self.stdout.write("Demo credentials (POST /api/auth/login):")
        for cred in credentials:
            shown = cred.password if cred.password is not None else "(existing user: left unchanged)"
            self.stdout.write(f"  {cred.username:<12} {shown}   org={cred.organization} role={cred.role}")
