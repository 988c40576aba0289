"""Delivery of this process's cache counters to the shared store within a few seconds, even when idle.

``cache.count`` flushes on the request path only when traffic continues; a daemon thread per
process (started lazily, so after any fork) flushes what an idle process still holds, and
Celery tasks flush when they finish.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from cachemgmt import cache

logger = logging.getLogger("cachemgmt.counters")

_started_here: list[bool] = [False]  # forgotten in a forked child (which starts its own)
_enabled: list[bool] = [False]
_lock = threading.Lock()


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _started_here[0] = False


os.register_at_fork(after_in_child=_forget_after_fork)


def _flush_quietly() -> None:
    try:
        cache.stats_flush()
    except Exception:
        logger.debug("cache counters not flushed", exc_info=True)


def _loop(interval: float) -> None:
    stop = threading.Event()
    while not stop.wait(interval):
        _flush_quietly()


def stats_flusher_enable() -> None:
    """Called by the server entry points (``project.wsgi``, ``project.asgi``).

    Only a server process runs the thread: tests, commands and shells flush on read. The
    thread itself starts on the first request, so every forked worker gets its own.
    """
    _enabled[0] = True


def stats_flusher_start(*, interval: float = cache.STATS_FLUSH_SECONDS) -> None:
    """Start this process's flusher once, when enabled (cheap: two comparisons after the first call)."""
    if _started_here[0] or not _enabled[0]:
        return
    with _lock:
        if _started_here[0]:
            return
        _started_here[0] = True
        threading.Thread(target=_loop, args=(interval,), name="cache-stats-flush", daemon=True).start()
        atexit.register(_flush_quietly)


def task_postrun_flush(**_: object) -> None:
    _flush_quietly()


def celery_signals_connect() -> None:
    from celery.signals import task_postrun

    task_postrun.connect(task_postrun_flush, weak=False, dispatch_uid="cache-stats-flush-postrun")
