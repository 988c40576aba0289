"""revoke_tokens: end the sessions (and with them every access and refresh token) of one user or of everyone."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import sessions_revoke_all, sessions_revoke_user


class Command(BaseCommand):
    help = "End every session of one user (--user NAME) or of everyone (--all, the incident switch)."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", metavar="NAME", help="username whose sessions end")
        who.add_argument("--all", action="store_true", help="end every session of every user")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["all"]:
            ended = sessions_revoke_all()
            self.stdout.write(f"Ended {ended} sessions of every user; their tokens are refused from now on.")
            return
        try:
            ended = sessions_revoke_user(username=options["user"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Ended {ended} sessions of {options['user']}; their tokens are refused from now on.")
