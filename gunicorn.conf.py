"""gunicorn's configuration for ``gunicorn project.wsgi`` (read from the working directory).

A bad setting stops the whole server, with one line naming the variable, before any worker is
forked: otherwise each worker would exit and be respawned forever while the master listens.
gunicorn's own lines use the project's log format.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from project.logging import FORMATTER_CONFIG

# gunicorn's exit status when a worker cannot boot (Arbiter.WORKER_BOOT_ERROR).
BOOT_ERROR = 3


def on_starting(server: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - reading one setting evaluates them all
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(BOOT_ERROR)


logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": FORMATTER_CONFIG},
    "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["default"], "level": "WARNING"},
    "loggers": {
        "gunicorn.error": {"handlers": ["default"], "level": "INFO", "propagate": False},
        # The project writes one line per request itself (cachemgmt.middleware).
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}
