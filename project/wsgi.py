"""WSGI entry point: `gunicorn project.wsgi`."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:  # one clear line instead of a traceback
    sys.stderr.write(f"configuration error: {exc}\n")
    # gunicorn's WORKER_BOOT_ERROR: the master stops instead of respawning workers forever.
    raise SystemExit(3) from None

from cachemgmt.carrier import carrier_enable  # after setup: they import the cache module
from cachemgmt.counters import stats_flusher_enable

stats_flusher_enable()
carrier_enable()
