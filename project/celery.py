"""The Celery app: `celery -A project worker` and `celery -A project beat`."""

from __future__ import annotations

import os
import sys

from celery import Celery
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Under the celery command, a bad setting stops a worker or beat with one line naming the
# variable, before Celery starts (elsewhere importing the project raises as usual).
if "celery" in os.path.basename(sys.argv[0]) or sys.argv[0].endswith(os.path.join("celery", "__main__.py")):
    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - reading one setting evaluates them all
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(2)

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
