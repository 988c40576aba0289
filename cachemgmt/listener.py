"""The carrier's LISTEN connection: woken by the triggers' NOTIFY, and able to tell a request
that nothing is waiting on it while the carrier waits (``cachemgmt.carrier``'s trust renewal)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connections

from cachemgmt.capture import NOTIFY_CHANNEL

logger = logging.getLogger("cachemgmt.carrier")

# After the connection failed: the wait before the caller's pass and a new connection.
RECONNECT_WAIT_SECONDS = 0.2

# DATABASE_DIRECT_URL's parts that replace the pooled connection's.
_DIRECT_PARAMS = {"HOST": "host", "PORT": "port", "USER": "user", "PASSWORD": "password"}


class ChangeListener:
    """A dedicated PostgreSQL connection LISTENing for the triggers' NOTIFY (a session feature:
    it needs a direct connection, not a transaction-mode pooler)."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._poller: Any = None
        # For quiet() from request threads: a poll object of their own (one poll object cannot
        # be polled by two threads at once), and the state of the carrier's wait.
        self._probe: Any = None
        self._probe_lock = threading.Lock()
        self._waiting = False
        self._wakes = 0
        # Written by interrupt(): ends a wait at once (a stop need not wait for a notification).
        self._interrupt_r, self._interrupt_w = os.pipe()
        os.set_blocking(self._interrupt_r, False)
        os.set_blocking(self._interrupt_w, False)

        self._released = False

    def interrupt(self) -> None:
        """End the current or next wait now."""
        with self._probe_lock:  # never after release(): the descriptor may belong to another file by then
            if not self._released:
                with contextlib.suppress(OSError):  # already pending (a full pipe)
                    os.write(self._interrupt_w, b"x")

    def _connect(self) -> Any:
        import psycopg

        params = connections["default"].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        direct = getattr(settings, "DATABASE_DIRECT", None)
        if direct:
            # Behind a transaction-mode pooler LISTEN needs the server itself (same database).
            params.update({key: direct[name] for name, key in _DIRECT_PARAMS.items() if direct.get(name)})
        # Keepalives: a peer that vanished without closing is noticed within seconds.
        keepalives = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2}
        conn = psycopg.connect(**{**keepalives, **params}, autocommit=True)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._poller = select.poll()
        self._poller.register(conn.fileno(), select.POLLIN)
        self._poller.register(self._interrupt_r, select.POLLIN)
        probe = select.poll()
        probe.register(conn.fileno(), select.POLLIN)
        with self._probe_lock:
            self._probe = probe
        return conn

    def quiet(self) -> bool:
        """True when the carrier is waiting on this connection and nothing (a notification, a
        hang-up, an error) is waiting to be read: every change committed before this call has
        been applied. A wake of the carrier during the call makes it False."""
        wakes = self._wakes
        if not self._waiting:
            return False
        with self._probe_lock:
            if self._probe is None:
                return False
            events = self._probe.poll(0)
        return not events and self._waiting and self._wakes == wakes

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a NOTIFY. False only when the connection stayed up and
        nothing arrived; True after a notification, a (re)connection or an error (the caller
        then runs a pass, which catches whatever was committed while it was not listening)."""
        try:
            if self._conn is None:
                self._conn = self._connect()  # LISTEN first: the pass that follows sees the rest
                return True
            # One wait on the socket, the interpreter lock released throughout: psycopg's own
            # timed wait wakes repeatedly near its deadline, and each wake takes the lock from the
            # thread serving requests (several milliseconds of CPU per call under load).
            self._waiting = True
            try:
                ready = self._poller.poll(timeout * 1000)
            finally:
                # Before anything is read: a quiet() under way must not see an empty socket
                # and conclude that nothing arrived.
                self._waiting = False
                self._wakes += 1
            if not ready:
                return bool(self._conn.closed or self._conn.broken)
            if any(fd == self._interrupt_r for fd, _ in ready):
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._interrupt_r, 64)
                return True
            for _ in self._conn.notifies(timeout=0, stop_after=1):
                return True
            return bool(self._conn.closed or self._conn.broken)
        except Exception:
            logger.debug("change listener unavailable", exc_info=True)
            self.close()
            time.sleep(min(timeout, RECONNECT_WAIT_SECONDS))  # then a pass, and a new connection
            return True

    def release(self) -> None:
        """Close the connection and the interrupt pipe (the listener is not used again)."""
        self.close()
        with self._probe_lock:
            if self._released:
                return
            self._released = True
            for fd in (self._interrupt_r, self._interrupt_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def close(self) -> None:
        with self._probe_lock:
            self._probe = None
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                logger.debug("change listener close failed", exc_info=True)
            self._conn = None
