from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


class CachemgmtConfig(AppConfig):
    name = "cachemgmt"
    verbose_name = "Cache"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cachemgmt import counters
        from project import request_context, schema  # noqa: F401 - registers the OpenAPI auth extension

        request_context.celery_signals_connect()
        counters.celery_signals_connect()
        pre_migrate.connect(_capture_uninstall_sqlite, sender=self, dispatch_uid="cachemgmt-capture-sqlite-pre")
        post_migrate.connect(_capture_install_sqlite, sender=self, dispatch_uid="cachemgmt-capture-sqlite")


def _capture_install_sqlite(using: str = "default", **_: Any) -> None:
    """SQLite has no migrations for triggers (django-pgtrigger is PostgreSQL's): install the
    capture triggers after every migrate, from the same declarations."""
    from django.db import connections

    from cachemgmt.capture import sqlite_install

    if connections[using].vendor == "sqlite":
        sqlite_install(connections[using])


def _capture_uninstall_sqlite(using: str = "default", **_: Any) -> None:
    from django.db import connections

    from cachemgmt.capture import sqlite_uninstall

    if connections[using].vendor == "sqlite":
        sqlite_uninstall(connections[using])
