"""History protection in the database: a logged-out token never works again, whoever writes.

PostgreSQL refuses to change a revocation, to delete one whose token still lives (unless its
user goes in the same transaction: checked at commit, after Django's cascade), and to lower
a token version. These are plain triggers (installed by migration 0004), not django-pgtrigger
ones, which a session could switch off with its ``pgtrigger.ignore`` setting. TRUNCATE
bypasses row triggers: run the application under a role that does not own its tables.

SQLite gets the same guarantee in a form its test and demo databases can live with (Django
flushes them by deleting rows, in any table order): a revocation cannot be changed, a token
version cannot go down, and deleting a revocation whose token still lives ends every token
of its user instead of reviving that one (fail closed).
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


POSTGRES_INSTALL = """
CREATE OR REPLACE FUNCTION authctx_revocation_never_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a revocation is never changed (jti %)', OLD.jti;
END $$;
DROP TRIGGER IF EXISTS authctx_revocation_never_changes ON accounts_revokedtoken;
CREATE TRIGGER authctx_revocation_never_changes BEFORE UPDATE ON accounts_revokedtoken
    FOR EACH ROW EXECUTE FUNCTION authctx_revocation_never_changes();

CREATE OR REPLACE FUNCTION authctx_revocation_kept_while_live() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.expires_at > clock_timestamp() AND EXISTS (SELECT 1 FROM accounts_user u WHERE u.id = OLD.user_id) THEN
        RAISE EXCEPTION 'a revocation is kept until its token expires (jti %)', OLD.jti;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS authctx_revocation_kept_while_live ON accounts_revokedtoken;
CREATE CONSTRAINT TRIGGER authctx_revocation_kept_while_live AFTER DELETE ON accounts_revokedtoken
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION authctx_revocation_kept_while_live();

CREATE OR REPLACE FUNCTION authctx_token_version_never_decreases() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a token version never decreases (user %)', OLD.id;
END $$;
DROP TRIGGER IF EXISTS authctx_token_version_never_decreases ON accounts_user;
CREATE TRIGGER authctx_token_version_never_decreases BEFORE UPDATE OF token_version ON accounts_user
    FOR EACH ROW WHEN (NEW.token_version < OLD.token_version)
    EXECUTE FUNCTION authctx_token_version_never_decreases();
"""

POSTGRES_UNINSTALL = """
DROP TRIGGER IF EXISTS authctx_revocation_never_changes ON accounts_revokedtoken;
DROP TRIGGER IF EXISTS authctx_revocation_kept_while_live ON accounts_revokedtoken;
DROP TRIGGER IF EXISTS authctx_token_version_never_decreases ON accounts_user;
DROP FUNCTION IF EXISTS authctx_revocation_never_changes();
DROP FUNCTION IF EXISTS authctx_revocation_kept_while_live();
DROP FUNCTION IF EXISTS authctx_token_version_never_decreases();
"""


def postgres_install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_INSTALL, params=None)


def postgres_uninstall(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_UNINSTALL, params=None)
