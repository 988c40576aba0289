"""ASGI entry point (the WSGI one serves more requests per core; see README)."""

import os

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
try:
    application = get_asgi_application()
except ImproperlyConfigured as exc:
    raise SystemExit(f"configuration error: {exc}") from None

from cachemgmt.carrier import carrier_enable  # after setup: they import the cache module
from cachemgmt.counters import stats_flusher_enable

stats_flusher_enable()
carrier_enable()
