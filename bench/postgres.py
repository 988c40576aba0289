"""PostgreSQL: the bench database, and statement counts as PostgreSQL itself sees them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from bench.pgstats import FLUSH_SQL


class Postgres:
    """Counts statements run in the bench database, server side.

    With ``pg_stat_statements`` preloaded: the sum of its ``calls`` for the database. Without it
    (this machine): ``xact_commit + xact_rollback`` of ``pg_stat_database``. Every statement the
    measured paths run is in autocommit, so one statement is one transaction; a backend publishes
    its counts at most once a second, so the caller first makes every pooled backend publish
    (``/bench/pgflush``) and subtracts the statements that took.
    """

    def __init__(self, admin_url: str, db_name: str) -> None:
        self.admin_url = admin_url
        self.db_name = db_name
        self.admin = psycopg.connect(admin_url, autocommit=True)
        preload = self.admin.execute("SHOW shared_preload_libraries").fetchone()
        self.pgss = bool(preload and "pg_stat_statements" in str(preload[0]))
        self.method = (
            "pg_stat_statements (sum of calls in the bench database)"
            if self.pgss
            else "pg_stat_statements is not preloaded here, so: pg_stat_database.xact_commit + xact_rollback - "
            "sessions of the bench database (every measured statement runs in autocommit, so one statement is one "
            "transaction; a new connection's start-up transaction is taken off through sessions), read after every "
            "pooled backend published its counters (pg_stat_force_next_flush() on each pooled connection of each "
            "worker, those flush statements subtracted)"
        )
        self.version = str(self.admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def db_url(self) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{self.db_name}"

    def recreate(self, *, log_statements: bool = False) -> None:
        ident = sql.Identifier(self.db_name)
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        # Django runs set_config('TimeZone') on every new connection whose zone is not UTC;
        # a UTC database keeps connection set-up free of statements, as a production one would.
        self.admin.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'UTC'").format(ident))
        if log_statements:  # debugging the counts: the server log then shows every statement
            self.admin.execute(sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(ident))
        if self.pgss:
            with psycopg.connect(self.db_url(), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute(FLUSH_SQL)

    def statements(self) -> int:
        if self.pgss:
            with psycopg.connect(self.db_url(), autocommit=True) as conn:
                row = conn.execute(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                    "WHERE d.datname = %s AND s.query NOT LIKE %s AND s.query NOT LIKE %s",
                    [self.db_name, "%pg_stat_force_next_flush%", "%pg_stat_statements%"],
                ).fetchone()
            return int(row[0]) if row else 0
        # A new connection runs one transaction of its own while starting (and counts a session).
        row = self.admin.execute(
            "SELECT xact_commit + xact_rollback - sessions FROM pg_stat_database WHERE datname = %s", [self.db_name]
        ).fetchone()
        return int(row[0]) if row else 0

    def run_in_db(self, statements: Iterable[Any], params: dict[str, Any] | None = None) -> None:
        """Run statements in the bench database on a short-lived connection that publishes its stats."""
        with psycopg.connect(self.db_url(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement, params or {})
            conn.execute(FLUSH_SQL)

    def columns(self, table: str) -> list[tuple[str, str, bool, bool]]:
        with psycopg.connect(self.db_url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT column_name, data_type, is_nullable = 'YES', "
                "(column_default IS NOT NULL OR is_identity = 'YES') FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                [table],
            ).fetchall()
            conn.execute(FLUSH_SQL)
        return [(str(r[0]), str(r[1]), bool(r[2]), bool(r[3])) for r in rows]

    def grow_users(self, meta: dict[str, Any], target: int) -> float:
        """Add users (with profiles and memberships) by generate_series up to id ``target``."""
        started = time.perf_counter()
        tables = meta["tables"]
        with psycopg.connect(self.db_url(), autocommit=True) as conn:
            row = conn.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(tables["user"]))).fetchone()
        low = int(row[0] or 0) + 1 if row else 1
        if low > target:
            return 0.0
        orgs, roles = meta["organization_ids"], meta["role_ids"]
        known = {
            "user": {
                "id": "g",
                "password": "%(hash)s",
                "username": "'bulk' || g",
                "email": "'bulk' || g || '@example.com'",
                "is_active": "true",
                "date_joined": "now()",
            },
            "profile": {"user_id": "g", "display_name": "'Bulk User ' || g", "locale": "'en'", "timezone": "'UTC'"},
            "membership": {
                "user_id": "g",
                "organization_id": f"(ARRAY{list(map(int, orgs))}::bigint[])[mod(g, {len(orgs)}) + 1]",
                "role_id": f"(ARRAY{list(map(int, roles))}::bigint[])[mod(g, {len(roles)}) + 1]",
                "is_active": "true",
                "created_at": "now()",
            },
        }
        statements = []
        for kind in ("user", "profile", "membership"):
            names, values = [], []
            for column, data_type, nullable, has_default in self.columns(tables[kind]):
                expression = known[kind].get(column)
                if expression is None:
                    if has_default or nullable:
                        continue
                    expression = _filler(data_type)
                names.append(sql.Identifier(column))
                values.append(sql.SQL(expression))
            insert = "INSERT INTO {} ({}) SELECT {} FROM generate_series(%(low)s::bigint, %(high)s::bigint) g"
            statements.append(
                sql.SQL(insert).format(
                    sql.Identifier(tables[kind]), sql.SQL(", ").join(names), sql.SQL(", ").join(values)
                )
            )
        statements.append(
            sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), %(high)s::bigint)").format(
                sql.Literal(tables["user"])
            )
        )
        # The cold users' sessions (their tokens name them), once the users exist.
        sessions = [pair for pair in meta["cold_sessions"] if low <= pair[0] <= target]
        statements.append(
            sql.SQL(
                "INSERT INTO {} (id, user_id, device, created_at, last_used_at, expires_at, max_expires_at, "
                "token_version, refresh_hash, refreshed_at, end_reason) "
                "SELECT s, u, 'bench', now(), now(), now() + interval '30 days', now() + interval '90 days', 0, "
                "encode(sha256(uuid_send(s)), 'hex'), now(), '' "
                "FROM unnest(%(session_users)s::bigint[], %(session_ids)s::uuid[]) AS t(u, s) ON CONFLICT DO NOTHING"
            ).format(sql.Identifier(tables["session"]))
        )
        statements += [sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(tables[k])) for k in tables]
        params = {
            "low": low,
            "high": target,
            "hash": meta["shared_password_hash"],
            "session_users": [pair[0] for pair in sessions],
            "session_ids": [pair[1] for pair in sessions],
        }
        self.run_in_db(statements, params)
        return time.perf_counter() - started


def _filler(data_type: str) -> str:
    if data_type == "boolean":
        return "false"
    if data_type in ("integer", "bigint", "smallint", "numeric", "real", "double precision"):
        return "0"
    if data_type.startswith("timestamp"):
        return "now()"
    if data_type == "date":
        return "current_date"
    if data_type in ("json", "jsonb"):
        return "'{}'"
    return "''"
