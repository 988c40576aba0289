"""The carrier: applies the changes the database recorded (``DependencyChange``) to the cache, in every topology.

What it does, where, and the guarantee:

* **Shared cache (Redis).** One carrier in the whole deployment applies changes: every web
  process (started through ``project.wsgi`` or ``project.asgi``) runs a carrier thread, and
  the one holding the ``carrier-leader`` lock in Redis (renewed on every pass, 3 s expiry)
  does the work; the others follow its heartbeat and take over within the expiry when it
  dies (the expiry and up to ``STANDBY_SECONDS``). The leader keeps its cursor (the last
  applied change id)
  in Redis, so a change committed while no carrier runs is applied when one starts, and
  writes a heartbeat after every pass that left nothing pending.
* **In-process cache (no Redis).** Every process keeps its own store, so every process runs
  its own carrier for its own store, following the changes from its start.
* **Waking up.** On PostgreSQL a carrier LISTENs on ``capture.NOTIFY_CHANNEL`` (the triggers
  NOTIFY at commit): while the connection is healthy and silent, nothing was committed, so
  it queries only after a notification, a reconnection, or every ``VERIFY_SECONDS`` as a
  check on the connection itself. On SQLite it polls every ``POLL_SECONDS`` (one indexed
  query).
* **Trust.** A process serves cached contexts only while the carrier it depends on has
  caught up within ``TRUST_SECONDS``: the leader's heartbeat (shared cache) or its own last
  pass (in-process cache). Past that, ``user_context_get`` reads the database instead:
  never silently stale. Processes that run no carrier (tests, shells, commands) are not
  serving requests and keep trusting the cache.
* **Renewed by the requests.** Every wake of a background thread costs a worker serving
  requests several milliseconds of CPU (a thread waiting for the interpreter lock is woken,
  and loses the lock again, at each of the serving thread's socket calls), so the threads
  sleep long and the request that finds the trust run out renews it, at most once per
  ``RENEW_RETRY_SECONDS``: a standby reads the leader's heartbeat (one Redis ``GET``); a
  process's own carrier, waiting on its LISTEN socket after a complete pass, is caught up as
  long as nothing is waiting on that socket (one ``poll`` that does not wait; a wake of the
  carrier in between voids the check). A request that finds another thread renewing does not
  wait for it: it reads the database. The leader still writes its heartbeat every
  ``RENEW_SECONDS`` for the standbys, and a standby tries to take the lead every
  ``STANDBY_SECONDS``.

The project's own writes still bump their keys on commit themselves (no hop); the carrier
adds every other writer: ``update()``, bulk writes, raw SQL, another service, a migration.

* **Late commits.** PostgreSQL numbers changes when a statement runs, not when its
  transaction commits, so ids below the cursor can still appear: each pass also asks again
  for the ids it stepped over (gaps), and forgets a gap once every transaction that could
  hold it has ended (snapshot ``xmin`` past the ``xmax`` seen when it was missed).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, connections

from cachemgmt import cache
from cachemgmt.capture import CHANGE_TABLE
from cachemgmt.listener import ChangeListener

logger = logging.getLogger("cachemgmt.carrier")

TRUST_SECONDS = 1.0
# After a failed pass: the wait before the next.
IDLE_SECONDS = 0.2
# The leader writes its heartbeat this often when nothing is committed (a notification wakes it
# at once whatever this is): standbys renewing from it get between half and all of the bound.
RENEW_SECONDS = TRUST_SECONDS / 2
# A standby tries to take the lead this often (the lock expires LEADER_TTL_SECONDS after its
# holder's last renewal).
STANDBY_SECONDS = 1.0
# A request whose renewal found the carrier not caught up leaves the next ones this long to the
# database instead of checking again.
RENEW_RETRY_SECONDS = 0.05
POLL_SECONDS = 0.02
LEADER_TTL_SECONDS = 3
BATCH = 5000
STARTUP_WAIT_SECONDS = 0.5
HEARTBEAT_TTL_SECONDS = 1
# Even while LISTEN reports nothing, a pass runs this often: a connection that stopped
# delivering notifications without an error (a half-open socket, a pooler in between) is
# caught within it rather than trusted for as long as entries live.
VERIFY_SECONDS = 10.0
# Changes are kept this long (for inspection), then pruned by every carrier (see _prune).
RETENTION_SECONDS = 3600

LEADER_LOCK = "carrier-leader"
CURSOR = "carrier-cursor"
HEARTBEAT = "carrier-heartbeat"

# kind recorded by the triggers -> the dependency key(s) it bumps
_GLOBAL_KEYS = {"permissions": cache.dep_permissions_key, "zones": cache.dep_zones_key}
_ID_KEYS = {"user": cache.dep_user_key, "organization": cache.dep_organization_key, "role": cache.dep_role_key}


def keys_of(kind: str, ident: int) -> list[str]:
    if kind in _ID_KEYS:
        return [_ID_KEYS[kind](int(ident))]
    if kind in _GLOBAL_KEYS:
        return [_GLOBAL_KEYS[kind]()]
    if kind == "namespace":
        return [cache.namespace_key(cache.NAMESPACES[int(ident)])]
    if kind == "all":  # a statement touching more rows than capture.COARSE_LIMIT
        return [cache.namespace_key(namespace) for namespace in cache.NAMESPACES] + [cache.dep_zones_key()]
    logger.warning("unknown dependency change kind", extra={"kind": kind})
    return []


@dataclass
class CarrierStatus:
    role: str = "off"  # off, leader, standby, local
    cursor: int = 0
    # Wall time the carrier was last known caught up: the start of its last pass that left
    # nothing pending, or (a process's own carrier) a request's check of its quiet socket.
    caught_up_at: float = 0.0
    applied: int = 0
    errors: int = 0
    pid: int = 0
    trusted_until: float = 0.0  # monotonic

    def lag_seconds(self, now: float | None = None) -> float | None:
        if not self.caught_up_at:
            return None
        return max(0.0, (now if now is not None else time.time()) - self.caught_up_at)


_status = CarrierStatus()
_enabled = [False]
_lock = threading.Lock()
_stop = threading.Event()
_ready = threading.Event()
_stopped = [False]


def carrier_enable(enabled: bool = True) -> None:
    """Called by the server entry points (``project.wsgi``, ``project.asgi``): this process runs
    a carrier and trusts cached contexts only while it (or the deployment's leader) keeps up."""
    _enabled[0] = enabled


def carrier_status() -> CarrierStatus:
    return _status


def carrier_enabled() -> bool:
    """Whether this process runs a carrier (a server process)."""
    return _enabled[0]


def cache_trusted() -> bool:
    """Whether cached contexts may be served now (one comparison on the request path, and
    when the trust has run out, one renewal: this module's docstring)."""
    if not _enabled[0]:
        return True
    if not _stopped[0] and not _started_here[0]:
        carrier_start()
    now = time.monotonic()
    if now < _status.trusted_until:
        return True
    return _renew(now)


_renewing = threading.Lock()
_next_renewal = [0.0]
# Whether this process started its carrier (the request path checks it instead of asking the
# kernel for the process id each time); cleared by carrier_stop and in a forked child.
_started_here = [False]
# The listener this process's own carrier waits on after a complete pass (None otherwise).
_waiting_listener: list[ChangeListener | None] = [None]


def _forget_after_fork() -> None:
    """In a forked child: the parent's locks and events may have been held at the fork (its
    carrier thread did not survive it), and its listener is not this process's carrier's."""
    global _renewing, _lock, _stop, _ready
    _renewing = threading.Lock()
    _lock = threading.Lock()
    _stop = threading.Event()
    _ready = threading.Event()
    _waiting_listener[0] = None
    _current_listener[0] = None
    _next_renewal[0] = 0.0
    _started_here[0] = False


os.register_at_fork(after_in_child=_forget_after_fork)


def _renew(now: float) -> bool:
    """Renew the trust from the request path (this module's docstring)."""
    if not _renewing.acquire(blocking=False):
        return False  # another thread is renewing (a standby's GET may take a timeout): not waited for
    try:
        if time.monotonic() < _status.trusted_until:
            return True  # another thread renewed it meanwhile
        if now < _next_renewal[0] or _stopped[0]:
            return False
        _next_renewal[0] = now + RENEW_RETRY_SECONDS
        checked = time.time()
        try:
            if _status.role == "local":
                listener = _waiting_listener[0]
                if listener is not None and listener.quiet():
                    _status.caught_up_at = checked
                    _trust_until(checked)
            elif _status.role == "standby":
                raw = cache.shared_get(HEARTBEAT)
                if raw is not None and _status.role == "standby":
                    _trust_until(float(json.loads(raw)[0]))
        except Exception:  # not renewed: this request reads the database
            logger.debug("carrier trust not renewed", exc_info=True)
        return time.monotonic() < _status.trusted_until
    finally:
        _renewing.release()


def carrier_start() -> None:
    """Start this process's carrier thread once (after a fork, again in the child)."""
    pid = os.getpid()
    if _status.pid == pid or not _enabled[0]:
        return
    with _lock:
        if _status.pid == pid:
            return
        _stopped[0] = False
        _status.__init__()  # type: ignore[misc]  # a forked child starts from nothing
        _status.pid = pid
        _stop.clear()
        _ready.clear()
        thread = threading.Thread(target=_run, name="dependency-carrier", daemon=True)
        _threads[:] = [thread]
        thread.start()
        _started_here[0] = True
    # The process's first request waits for the first pass (a few milliseconds) rather than
    # reading the database because the carrier has not looked yet.
    _ready.wait(STARTUP_WAIT_SECONDS)


def carrier_stop(*, timeout: float = 5.0) -> None:
    """Stop this process's carrier until ``carrier_start()`` (a leader's lock expires by itself);
    meanwhile this process stops trusting cached contexts."""
    _stopped[0] = True
    _stop.set()
    listener = _current_listener[0]
    if listener is not None:
        listener.interrupt()
    for thread in _threads:
        thread.join(timeout)
    _threads.clear()
    with _renewing:  # a renewal under way cannot bring the trust back after this
        _started_here[0] = False
        _status.pid = 0
        _status.role = "off"
        _status.trusted_until = 0.0


_threads: list[threading.Thread] = []


def _run() -> None:
    listener = ChangeListener() if connection.vendor == "postgresql" else None
    _current_listener[0] = listener
    try:
        _loop(listener)
    finally:
        if _current_listener[0] is listener:  # not a newer carrier's (a stop that timed out)
            _current_listener[0] = None
        if listener is not None:
            listener.release()
        connections.close_all()


def _loop(listener: ChangeListener | None) -> None:
    shared = cache.backend_name() == "redis"
    token: str | None = None
    fresh_start = not shared  # this process's own store must start empty (see below)
    need_pass = True
    last_pass = time.monotonic()
    _status.role = "standby" if shared else "local"
    while not _stop.is_set():
        started = time.time()
        try:
            if fresh_start:
                # Whatever this process's own store holds may predate the carrier (a restarted
                # carrier thread): it starts empty, from the newest change.
                _position_start()
                for namespace in cache.NAMESPACES:
                    cache.namespace_clear(namespace)
                fresh_start = False
            if shared:
                was_leader = _status.role == "leader"
                token = _lead(token)
                if token is None:
                    _follow_heartbeat()
                    _stop.wait(STANDBY_SECONDS)
                    continue
                need_pass = need_pass or not was_leader
            if need_pass:
                last_pass = time.monotonic()
                if _apply_pending(shared=shared):
                    continue  # more to apply: no wait
            _caught_up(started, shared=shared)
        except Exception:
            _status.errors += 1
            logger.warning("dependency carrier pass failed", exc_info=True)
            connections.close_all()
            if listener is not None:
                listener.close()
            need_pass = True
            _stop.wait(IDLE_SECONDS)
            continue
        finally:
            connections["default"].close_if_unusable_or_obsolete()
        if listener is not None:
            # An idle wait on a healthy LISTEN connection proves nothing was committed since
            # the last pass: the next pass queries only after a NOTIFY, a reconnection or
            # VERIFY_SECONDS, so an idle deployment costs the database almost nothing. The
            # leader wakes to write its heartbeat; a process's own carrier sleeps until a
            # notification or the next verifying pass, its requests renewing its trust meanwhile.
            idle = RENEW_SECONDS if shared else max(0.0, VERIFY_SECONDS - (time.monotonic() - last_pass))
            _waiting_listener[0] = None if shared else listener
            try:
                need_pass = listener.wait(idle) or time.monotonic() - last_pass > VERIFY_SECONDS
            finally:
                _waiting_listener[0] = None
        else:
            _stop.wait(POLL_SECONDS)
            need_pass = True


# The listener of this process's carrier thread while it runs (carrier_stop interrupts its wait).
_current_listener: list[ChangeListener | None] = [None]


def _lead(token: str | None) -> str | None:
    """Keep or take the leader lock; None while another process leads."""
    if token is not None and cache.lock_renew(LEADER_LOCK, token, ttl=LEADER_TTL_SECONDS):
        return token
    token = cache.lock_acquire(LEADER_LOCK, ttl=LEADER_TTL_SECONDS)
    if token is None:
        _status.role = "standby"
        return None
    if _status.role != "leader":
        _status.role = "leader"
        saved = cache.shared_get(CURSOR)
        if saved is None:
            # No cursor: Redis is new or was flushed, so no entry predates this point; start
            # from the newest change, clearing every namespace in case entries do remain.
            for namespace in cache.NAMESPACES:
                cache.namespace_clear(namespace)
            _position_start()
            _position_save()
        else:
            position = json.loads(saved)
            _status.cursor = int(position["cursor"])
            _gaps.clear()
            _gaps.update({int(k): int(v) for k, v in position["gaps"].items()})
        logger.info("dependency carrier leading", extra={"cursor": _status.cursor})
    return token


# Ids below the cursor not yet visible (a transaction still in progress may commit them), each
# with the snapshot's xmax when it was first missed: once every transaction older than that has
# ended (xmin >= it), a still-missing id was rolled back and is forgotten.
_gaps: dict[int, int] = {}
# At start, ids this far below the newest are watched too (transactions in progress then).
START_WINDOW = 10_000

_PASS_SQL = {
    "postgresql": (
        "SELECT s.xmin, s.xmax, c.id, c.kind, c.ident FROM ("
        " SELECT pg_snapshot_xmin(snap)::text::bigint AS xmin, pg_snapshot_xmax(snap)::text::bigint AS xmax"
        " FROM pg_current_snapshot() AS snap) AS s"
        f" LEFT JOIN LATERAL (SELECT id, kind, ident FROM {CHANGE_TABLE}"
        "  WHERE id > %s OR id = ANY(%s) ORDER BY id LIMIT %s) AS c ON true"
    ),
    # One writer at a time: ids are visible in order, nothing is ever missed for later.
    "sqlite": f"SELECT 0, 0, id, kind, ident FROM {CHANGE_TABLE} WHERE id > %s ORDER BY id LIMIT %s",
}


def _position_start() -> None:
    """Start from the newest change, watching the recent ids not yet visible."""
    newest = newest_change_id()
    _gaps.clear()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and newest:
            cursor.execute(
                f"SELECT id FROM {CHANGE_TABLE} WHERE id > %s",
                [newest - START_WINDOW],
            )
            seen = {int(row[0]) for row in cursor.fetchall()}
            cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            xmax = int(cursor.fetchone()[0])
            _gaps.update({i: xmax for i in range(max(1, newest - START_WINDOW + 1), newest + 1) if i not in seen})
    _status.cursor = newest


def _position_save() -> None:
    cache.shared_set(CURSOR, json.dumps({"cursor": _status.cursor, "gaps": {str(k): v for k, v in _gaps.items()}}))


def _apply_pending(*, shared: bool) -> bool:
    """Apply one batch of the changes after the cursor (and of those it missed because their
    transactions had not committed yet); True when more may be waiting."""
    if _status.caught_up_at and time.time() - _status.caught_up_at > RETENTION_SECONDS / 2:
        # Behind for so long that pruning may have removed changes it never applied:
        # defeat everything and start over from the newest change.
        for namespace in cache.NAMESPACES:
            cache.namespace_clear(namespace)
        _position_start()
        if shared:
            _position_save()
        logger.warning("dependency carrier restarted from the newest change after a long gap")
        return False
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_PASS_SQL["postgresql"], [_status.cursor, list(_gaps), BATCH])
        else:
            cursor.execute(_PASS_SQL["sqlite"], [_status.cursor, BATCH])
        rows = cursor.fetchall()
    # PostgreSQL always answers one row (the snapshot, with or without a change); SQLite none
    # when nothing is new.
    xmin, xmax = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
    found = [(int(row[2]), str(row[3]), int(row[4])) for row in rows if row[2] is not None]
    keys = sorted({key for _, kind, ident in found for key in keys_of(kind, ident)})
    if keys:
        cache.deps_bump(keys)
    ids = {change_id for change_id, _, _ in found}
    for change_id in ids & _gaps.keys():
        del _gaps[change_id]
    newest = max(ids, default=_status.cursor)
    if connection.vendor == "postgresql":
        # Ids skipped on the way to the newest: their transactions may still commit them.
        for missing in range(_status.cursor + 1, newest):
            if missing not in ids:
                _gaps[missing] = xmax
        for gap, seen_xmax in list(_gaps.items()):
            if xmin >= seen_xmax:  # every transaction that could hold it has ended
                del _gaps[gap]
    changed = newest != _status.cursor or bool(found)
    _status.cursor = max(_status.cursor, newest)
    _status.applied += len(found)
    if shared and changed:
        _position_save()
    return len(found) == BATCH


def _caught_up(started: float, *, shared: bool) -> None:
    _status.caught_up_at = started
    if shared:
        # It lives no longer than the bound: a standby trusts it by its presence, so clocks that
        # differ between hosts cannot stretch the trust of a dead leader's last word.
        cache.shared_set(HEARTBEAT, json.dumps([started, _status.cursor]), ttl=HEARTBEAT_TTL_SECONDS)
    _prune()
    _trust_until(started)


def _follow_heartbeat() -> None:
    """A standby trusts the cache while the leader's last caught-up pass is recent."""
    raw = cache.shared_get(HEARTBEAT)
    if raw is None:
        _status.trusted_until = 0.0
        return
    caught_up_at, cursor = json.loads(raw)
    _status.caught_up_at, _status.cursor = float(caught_up_at), int(cursor)
    _trust_until(float(caught_up_at))


def _trust_until(caught_up_at: float) -> None:
    age = max(0.0, time.time() - caught_up_at)
    _status.trusted_until = time.monotonic() + TRUST_SECONDS - age
    _ready.set()


_last_prune = [0.0]


def _prune() -> None:
    """Delete changes older than the retention (every carrier, at most once a minute): a carrier
    that far behind has long stopped being trusted, and starts over from the newest change."""
    if time.monotonic() - _last_prune[0] < 60:
        return
    _last_prune[0] = time.monotonic()
    horizon = time.time() - RETENTION_SECONDS
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {CHANGE_TABLE} WHERE id <= %s AND created_at < %s",
            [_status.cursor, datetime.fromtimestamp(horizon, tz=UTC)],
        )


def newest_change_id() -> int:
    """The id of the newest recorded change (0 when none)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {CHANGE_TABLE}")
        return int(cursor.fetchone()[0])
