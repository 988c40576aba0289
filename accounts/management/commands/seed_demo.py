"""seed_demo: demo organizations, roles, zones, users and one staff admin; prints credentials."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.demo import demo_seed
from zones.services import zone_sync_inline

DEFAULT_PASSWORD = "demo-pass-2026"  # noqa: S105 - printed demo credentials, by design


class Command(BaseCommand):
    help = "Create (or refresh) demo data and print the credentials. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=3, help="number of demo users besides the admin")
        parser.add_argument("--password", default=DEFAULT_PASSWORD, help="password for every demo user")

    def handle(self, *args: Any, **options: Any) -> None:
        users, password = options["users"], options["password"]
        if users < 0 or users > 100_000:
            raise CommandError("--users must be between 0 and 100000")
        if len(password) < 8:
            raise CommandError("--password must be at least 8 characters")
        credentials = demo_seed(users=users, password=password)
        self.stdout.write(f"zones: {zone_sync_inline()}")
        self.stdout.write("Demo credentials (POST /api/auth/login):")
        for cred in credentials:
            self.stdout.write(f"  {cred.username:<12} {cred.password}   org={cred.organization} role={cred.role}")
