"""WSGI entry point: `gunicorn project.wsgi`.

Bearer-token API calls take a middleware chain without the browser-only layers
(``project.handler``). Once everything is imported, the objects made so far are moved out of
the garbage collector's sight (``gc.freeze``): its collections then scan only what requests
allocate, and workers forked from a preloading server keep sharing those pages with it.
"""

import gc
import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
try:
    import django

    django.setup(set_prefix=False)
    from project.handler import LaneWSGIHandler

    application = LaneWSGIHandler()
except ImproperlyConfigured as exc:  # one clear line instead of a traceback
    sys.stderr.write(f"configuration error: {exc}\n")
    # gunicorn's WORKER_BOOT_ERROR: the master stops instead of respawning workers forever.
    raise SystemExit(3) from None

from cachemgmt.carrier import carrier_enable  # after setup: they import the cache module
from cachemgmt.counters import stats_flusher_enable

stats_flusher_enable()
carrier_enable()

gc.collect()
gc.freeze()
