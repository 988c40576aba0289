"""History protection in the database: an ended session never comes back, whoever writes.

PostgreSQL refuses to change an ended session, to change what a session is (its user, token
version, login time, absolute expiry), to delete a session or a retired refresh token while
the session may still be in use (unless its user goes in the same transaction: checked at
commit, after Django's cascade), to change a retired refresh token, and to lower a token
version. A password change (a new token version) or a deactivation ends every session of the
user, whatever wrote it. These are plain triggers (their SQL is in migrations 0004 and 0005,
as installed), not django-pgtrigger ones, which a session could switch off with its ``pgtrigger.ignore``
setting. TRUNCATE bypasses row triggers: run the application under a role that does not own
its tables.

SQLite gets the same guarantees in a form its test and demo databases can live with (Django
flushes them by deleting rows, in any table order): deleting a live session ends it anyway
(a context lists only the sessions that exist), so deletion is left alone there.
"""

from __future__ import annotations

from typing import Any

SQLITE_TRIGGERS = {
    "authctx_ended_session_never_changes": (
        "CREATE TRIGGER authctx_ended_session_never_changes BEFORE UPDATE ON accounts_session "
        "WHEN OLD.ended_at IS NOT NULL "
        "BEGIN SELECT RAISE(ABORT, 'an ended session never changes'); END"
    ),
    "authctx_session_identity_never_changes": (
        "CREATE TRIGGER authctx_session_identity_never_changes BEFORE UPDATE ON accounts_session "
        "WHEN NEW.id IS NOT OLD.id OR NEW.user_id IS NOT OLD.user_id OR NEW.token_version IS NOT OLD.token_version "
        "OR NEW.created_at IS NOT OLD.created_at OR NEW.max_expires_at IS NOT OLD.max_expires_at "
        "BEGIN SELECT RAISE(ABORT, 'a session''s user, token version and lifetime never change'); END"
    ),
    "authctx_retired_refresh_never_changes": (
        "CREATE TRIGGER authctx_retired_refresh_never_changes BEFORE UPDATE ON accounts_retiredrefreshtoken "
        "BEGIN SELECT RAISE(ABORT, 'a retired refresh token never changes'); END"
    ),
    "authctx_token_version_never_decreases": (
        "CREATE TRIGGER authctx_token_version_never_decreases BEFORE UPDATE OF token_version ON accounts_user "
        "WHEN NEW.token_version < OLD.token_version "
        "BEGIN SELECT RAISE(ABORT, 'a token version never decreases'); END"
    ),
    "authctx_sessions_end_with_password_or_status": (
        "CREATE TRIGGER authctx_sessions_end_with_password_or_status AFTER UPDATE ON accounts_user "
        "WHEN NEW.token_version <> OLD.token_version OR (OLD.is_active AND NOT NEW.is_active) "
        "BEGIN UPDATE accounts_session SET ended_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), "
        "end_reason = CASE WHEN NEW.is_active THEN 'password' ELSE 'deactivated' END "
        "WHERE user_id = NEW.id AND ended_at IS NULL; END"
    ),
}
# Installed by earlier releases on tables that no longer exist or under other names.
_SQLITE_RETIRED = ("authctx_revocation_never_changes", "authctx_revocation_deleted_ends_every_token")


def sqlite_uninstall(connection: Any) -> None:
    """Drop the history triggers (before every ``migrate``: SQLite rebuilds a table to alter
    it, and a trigger naming a table mid-rebuild fails the migration)."""
    with connection.cursor() as cursor:
        for name in (*_SQLITE_RETIRED, *SQLITE_TRIGGERS):
            cursor.execute(f'DROP TRIGGER IF EXISTS "{name}"')


def sqlite_install(connection: Any) -> None:
    """(Re)create the history triggers on a SQLite database (after every ``migrate``), when the
    tables they protect exist (a migration back to before them leaves none)."""
    sqlite_uninstall(connection)
    if "accounts_session" not in connection.introspection.table_names():
        return
    with connection.cursor() as cursor:
        for sql in SQLITE_TRIGGERS.values():
            cursor.execute(sql)
