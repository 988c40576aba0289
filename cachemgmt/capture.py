"""Change capture: triggers that record, in the writing transaction, which dependency a row change touches.

A model declares ``Capture(kind=..., column=...)`` in its ``Meta.triggers``: on PostgreSQL
django-pgtrigger installs it with the migrations; on SQLite the same declarations are
installed after every ``migrate`` (``sqlite_install``). Each trigger inserts one
``DependencyChange`` row per dependency the change touches (the old and the new value of
``column`` on an update that moves a row), and nothing for an update that changes no
column outside ``ignore``.

On PostgreSQL the trigger is deferred to commit and takes one transaction-scoped advisory
lock before inserting, so change ids are assigned in commit order: a reader that has seen
id N has seen every change committed before it, and a carrier can follow them with a plain
cursor. It also sends a NOTIFY (delivered at commit) to wake the carrier. SQLite has one
writer at a time, so its ids follow commit order by construction.
"""

from __future__ import annotations

import re
from typing import Any, cast

import pgtrigger
from django.db import models

CHANGE_TABLE = "cachemgmt_dependencychange"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
NOTIFY_CHANNEL = "authctx_dependency_changes"
# Serialises the recording of changes between committing transactions (see above).
ORDER_LOCK = 0x61757468637478  # "authctx"


class Capture(pgtrigger.Trigger):
    """Record ``kind`` changes: ``column`` names the row's id for that dependency, or None for a
    dependency every cached value shares (recorded with id 0)."""

    when = pgtrigger.After
    operation = pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete
    timing = pgtrigger.Deferred

    def __init__(self, *, kind: str, column: str | None, ignore: tuple[str, ...] = (), name: str | None = None) -> None:
        # Declared in code, never from input; checked anyway, since they are written into SQL.
        for word in (kind, column or "", *ignore):
            if not _IDENTIFIER.fullmatch(word or "x"):
                raise ValueError(f"not an identifier: {word!r}")
        self.kind = kind
        self.column = column
        self.ignore = ignore
        super().__init__(name=name or f"capture_{kind}")

    def _ident(self, row: str) -> str:
        return f"{row}.{self.column}" if self.column else "0"

    def get_func(self, model: Any) -> str:
        ignored = ", ".join(f"'{column}'" for column in self.ignore)
        unchanged = (
            f"(to_jsonb(NEW) - ARRAY[{ignored}]::text[]) = (to_jsonb(OLD) - ARRAY[{ignored}]::text[])"
            if self.ignore
            else "to_jsonb(NEW) = to_jsonb(OLD)"
        )
        insert = f"INSERT INTO {CHANGE_TABLE} (kind, ident, created_at) VALUES ('{self.kind}', %s, clock_timestamp());"  # noqa: S608 - identifiers checked in __init__
        moved = f"NEW.{self.column} IS DISTINCT FROM OLD.{self.column}" if self.column else "FALSE"
        return f"""
            IF TG_OP = 'UPDATE' AND {unchanged} THEN
                RETURN NULL;
            END IF;
            PERFORM pg_advisory_xact_lock({ORDER_LOCK});
            IF TG_OP = 'INSERT' THEN
                {insert % self._ident("NEW")}
            ELSE
                {insert % self._ident("OLD")}
                IF TG_OP = 'UPDATE' AND {moved} THEN
                    {insert % self._ident("NEW")}
                END IF;
            END IF;
            PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
            RETURN NULL;
        """

    def sqlite_sql(self, model: type[models.Model]) -> list[tuple[str, str]]:
        """``(name, CREATE TRIGGER ...)`` for SQLite: one trigger per operation."""
        table = model._meta.db_table
        columns = [f.column for f in model._meta.concrete_fields if f.column not in self.ignore]
        changed = " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in columns) or "0"
        insert = f"INSERT INTO {CHANGE_TABLE} (kind, ident, created_at) VALUES ('{self.kind}', %s, datetime('now'));"  # noqa: S608 - identifiers checked in __init__
        base = f"authctx_{self.name}_{table}"
        statements = {
            "insert": ("AFTER INSERT", "", insert % self._ident("NEW")),
            "delete": ("AFTER DELETE", "", insert % self._ident("OLD")),
            "update": (
                "AFTER UPDATE",
                f"WHEN {changed}",
                insert % self._ident("OLD")
                + (
                    f" INSERT INTO {CHANGE_TABLE} (kind, ident, created_at) SELECT '{self.kind}', NEW.{self.column},"
                    f" datetime('now') WHERE NEW.{self.column} IS NOT OLD.{self.column};"
                    if self.column
                    else ""
                ),
            ),
        }
        return [
            (
                f"{base}_{op}",
                f'CREATE TRIGGER "{base}_{op}" {event} ON "{table}" FOR EACH ROW {when} BEGIN {body} END',
            )
            for op, (event, when, body) in statements.items()
        ]


def captured() -> list[tuple[type[models.Model], Capture]]:
    """Every model and capture trigger declared in the project."""
    return [
        (cast(type[models.Model], model), trigger)
        for model, trigger in pgtrigger.registered()
        if isinstance(trigger, Capture)
    ]


def sqlite_install(connection: Any) -> int:
    """(Re)create every capture trigger on a SQLite database; returns how many exist."""
    names = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'authctx_capture_%'")
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP TRIGGER IF EXISTS "{name}"')
        for model, trigger in captured():
            for name, sql in trigger.sqlite_sql(model):
                cursor.execute(sql)
                names.append(name)
    return len(names)
