"""WSGI entry point: `gunicorn project.wsgi`."""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:  # one clear line instead of a traceback
    raise SystemExit(f"configuration error: {exc}") from None

from cachemgmt.carrier import carrier_enable  # after setup: they import the cache module
from cachemgmt.counters import stats_flusher_enable

stats_flusher_enable()
carrier_enable()
