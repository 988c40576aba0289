from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import receivers

        receivers.connect()
        pre_migrate.connect(_history_uninstall_sqlite, sender=self, dispatch_uid="accounts-history-sqlite-pre")
        post_migrate.connect(_history_install_sqlite, sender=self, dispatch_uid="accounts-history-sqlite")


def _history_install_sqlite(using: str = "default", **_: Any) -> None:
    from django.db import connections

    from accounts.history import sqlite_install

    if connections[using].vendor == "sqlite":
        sqlite_install(connections[using])


def _history_uninstall_sqlite(using: str = "default", **_: Any) -> None:
    from django.db import connections

    from accounts.history import sqlite_uninstall

    if connections[using].vendor == "sqlite":
        sqlite_uninstall(connections[using])
