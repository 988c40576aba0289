"""History protection on SQLite, where django-pgtrigger's triggers do not exist (see ``RevokedToken``).

PostgreSQL refuses to change a revocation, to delete one whose token still lives, or to lower
a token version. SQLite gets the same guarantee in a form its test and demo databases can
live with (Django flushes them by deleting rows, in any table order): a revocation cannot be
changed, a token version cannot go down, and deleting a revocation whose token still lives
ends every token of its user instead of reviving that one (fail closed).
"""

from __future__ import annotations

from typing import Any

SQLITE_TRIGGERS = {
    "authctx_revocation_never_changes": (
        "CREATE TRIGGER authctx_revocation_never_changes BEFORE UPDATE ON accounts_revokedtoken "
        "BEGIN SELECT RAISE(ABORT, 'a revocation is never changed'); END"
    ),
    "authctx_revocation_deleted_ends_every_token": (
        "CREATE TRIGGER authctx_revocation_deleted_ends_every_token AFTER DELETE ON accounts_revokedtoken "
        "WHEN OLD.expires_at > strftime('%Y-%m-%d %H:%M:%f', 'now') "
        "BEGIN UPDATE accounts_user SET token_version = token_version + 1 WHERE id = OLD.user_id; END"
    ),
    "authctx_token_version_never_decreases": (
        "CREATE TRIGGER authctx_token_version_never_decreases BEFORE UPDATE OF token_version ON accounts_user "
        "WHEN NEW.token_version < OLD.token_version "
        "BEGIN SELECT RAISE(ABORT, 'a token version never decreases'); END"
    ),
}


def sqlite_install(connection: Any) -> None:
    """(Re)create the history triggers on a SQLite database (after every ``migrate``)."""
    with connection.cursor() as cursor:
        for name, sql in SQLITE_TRIGGERS.items():
            cursor.execute(f'DROP TRIGGER IF EXISTS "{name}"')
            cursor.execute(sql)
