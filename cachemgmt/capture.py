"""Change capture: triggers that record, in the writing transaction, which dependencies a write touches.

A model declares ``capture(kind=..., column=...)`` in its ``Meta.triggers``: on PostgreSQL
django-pgtrigger installs the triggers with the migrations; on SQLite the same declarations
are installed after every ``migrate`` (``sqlite_install``). A write records one
``DependencyChange`` row per dependency it touches (the old and the new value of ``column``
when it moves a row), nothing for an update that changes no column outside ``ignore``, and
nothing at all if its transaction rolls back.

On PostgreSQL the triggers are statement-level, with transition tables: one statement
records the distinct dependencies of all the rows it wrote (a bulk write of 100,000 rows
costs one INSERT ... SELECT), and a statement touching more than ``COARSE_LIMIT`` of them
records a single ``all`` change instead; it also sends a NOTIFY, delivered at commit.
Ids are taken when a statement runs, not when its transaction commits, so a carrier
following them also watches the ids it has not seen yet (``cachemgmt.carrier``). SQLite has
one writer at a time, so plain row triggers number changes in commit order.
"""

from __future__ import annotations

import re
from typing import Any, cast

import pgtrigger
from django.db import models

CHANGE_TABLE = "cachemgmt_dependencychange"
NOTIFY_CHANNEL = "authctx_dependency_changes"
# Past this many distinct dependencies in one statement, one "all" change replaces them.
COARSE_LIMIT = 1000
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


class Capture(pgtrigger.Trigger):
    """One statement-level trigger of a ``capture`` declaration (one per operation)."""

    level = pgtrigger.Statement
    when = pgtrigger.After

    def __init__(self, *, kind: str, column: str | None, ignore: tuple[str, ...], operation: Any, name: str) -> None:
        # Declared in code, never from input; checked anyway, since they are written into SQL.
        for word in (kind, column or "", *ignore):
            if not _IDENTIFIER.fullmatch(word or "x"):
                raise ValueError(f"not an identifier: {word!r}")
        self.kind = kind
        self.column = column
        self.ignore = ignore
        referencing = {
            "INSERT": pgtrigger.Referencing(new="new_rows"),
            "DELETE": pgtrigger.Referencing(old="old_rows"),
            "UPDATE": pgtrigger.Referencing(old="old_rows", new="new_rows"),
        }[str(operation)]
        super().__init__(name=name, operation=operation, referencing=referencing)

    def _touched(self, model: Any) -> str:
        """SELECT of the dependency ids the statement touched (``ident``)."""
        op = str(self.operation)
        value = self.column or "0"
        if op == "INSERT":
            return f"SELECT {value} AS ident FROM new_rows"
        if op == "DELETE":
            return f"SELECT {value} AS ident FROM old_rows"
        pk = model._meta.pk.column
        ignored = ", ".join(f"'{column}'" for column in self.ignore) or "''"
        changed = (
            f"FROM new_rows n JOIN old_rows o ON o.{pk} = n.{pk} "
            f"WHERE (to_jsonb(n) - ARRAY[{ignored}]::text[]) IS DISTINCT FROM (to_jsonb(o) - ARRAY[{ignored}]::text[])"
        )
        if not self.column:
            return f"SELECT 0 AS ident {changed}"
        return f"SELECT n.{self.column} AS ident {changed} UNION SELECT o.{self.column} {changed}"

    def get_func(self, model: Any) -> str:
        return f"""
            WITH touched AS (SELECT DISTINCT ident FROM ({self._touched(model)}) AS t WHERE ident IS NOT NULL),
                 size AS (SELECT count(*) AS n FROM touched)
            INSERT INTO {CHANGE_TABLE} (kind, ident, created_at)
            SELECT '{self.kind}', ident, clock_timestamp() FROM touched WHERE (SELECT n FROM size) <= {COARSE_LIMIT}
            UNION ALL
            SELECT 'all', 0, clock_timestamp() WHERE (SELECT n FROM size) > {COARSE_LIMIT};
            IF FOUND THEN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
            END IF;
            RETURN NULL;
        """

    def sqlite_sql(self, model: type[models.Model]) -> tuple[str, str]:
        """``(name, CREATE TRIGGER ...)``: the same capture as a SQLite row trigger."""
        table = model._meta.db_table
        op = str(self.operation)
        columns = [f.column for f in model._meta.concrete_fields if f.column not in self.ignore]
        insert = f"INSERT INTO {CHANGE_TABLE} (kind, ident, created_at) VALUES ('{self.kind}', %s, datetime('now'));"
        ident = (lambda row: f"{row}.{self.column}") if self.column else (lambda row: "0")
        when = ""
        if op == "INSERT":
            body = insert % ident("NEW")
        elif op == "DELETE":
            body = insert % ident("OLD")
        else:
            when = "WHEN " + (" OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in columns) or "0")
            body = insert % ident("OLD")
            if self.column:
                body += (
                    f" INSERT INTO {CHANGE_TABLE} (kind, ident, created_at) SELECT '{self.kind}',"
                    f" NEW.{self.column}, datetime('now') WHERE NEW.{self.column} IS NOT OLD.{self.column};"
                )
        name = f"authctx_{self.name}_{table}"
        return name, f'CREATE TRIGGER "{name}" AFTER {op} ON "{table}" FOR EACH ROW {when} BEGIN {body} END'


def capture(*, kind: str, column: str | None, ignore: tuple[str, ...] = ()) -> list[Capture]:
    """The triggers recording ``kind`` changes of a model: ``column`` names the row's id for
    that dependency, or None for a dependency every cached value shares (recorded as id 0)."""
    return [
        Capture(kind=kind, column=column, ignore=ignore, operation=operation, name=f"capture_{kind}_{label}")
        for operation, label in ((pgtrigger.Insert, "ins"), (pgtrigger.Update, "upd"), (pgtrigger.Delete, "del"))
    ]


def captured() -> list[tuple[type[models.Model], Capture]]:
    """Every model and capture trigger declared in the project."""
    return [
        (cast(type[models.Model], model), trigger)
        for model, trigger in pgtrigger.registered()
        if isinstance(trigger, Capture)
    ]


def sqlite_uninstall(connection: Any) -> None:
    """Drop every capture trigger (before a migrate: SQLite rebuilds tables to alter them, and a
    trigger naming a table mid-rebuild fails the migration)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'authctx_capture_%'")
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP TRIGGER IF EXISTS "{name}"')


def sqlite_install(connection: Any) -> int:
    """(Re)create every capture trigger on a SQLite database, on the tables that exist (a
    migration back may have removed some); returns how many exist."""
    sqlite_uninstall(connection)
    tables = set(connection.introspection.table_names())
    if CHANGE_TABLE not in tables:
        return 0
    installed = 0
    with connection.cursor() as cursor:
        for model, trigger in captured():
            if model._meta.db_table not in tables:
                continue
            _, sql = trigger.sqlite_sql(model)
            cursor.execute(sql)
            installed += 1
    return installed
