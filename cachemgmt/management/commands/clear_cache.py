"""clear_cache: what POST /api/admin/cache/clear does, from the command line (audited)."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachemgmt.serializers import MAX_ID
from cachemgmt.services import CLEAR_CHOICES, Actor, ClearRefused, cache_clear


def command_actor() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(label=f"{who} (manage.py)")


class Command(BaseCommand):
    help = "Clear a cache namespace (default: all) or, with --user, one user's context. O(1): nothing is scanned."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--namespace", choices=CLEAR_CHOICES, default=None, help="default: all (user_context with --user)"
        )
        parser.add_argument("--user", type=int, default=None, metavar="ID", help="clear only this user's context")

    def handle(self, *args: Any, **options: Any) -> None:
        user_id = options["user"]
        namespace = options["namespace"] or ("user_context" if user_id is not None else "all")
        if user_id is not None and not 1 <= user_id <= MAX_ID:
            raise CommandError(f"--user: no user with id {user_id}")
        try:
            result = cache_clear(namespace=namespace, user_id=user_id, actor=command_actor(), source="command")
        except ClearRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Cleared: {', '.join(result['cleared'])}")
