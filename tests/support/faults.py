"""The fault tests' load: HTTP to web processes, a model of committed state to check answers against, and
the traffic (reader and writer threads) that uses both.

Traffic goes to 127.0.0.1 only. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import http.client as httpclient
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import close_old_connections, connection

from accounts import services
from accounts.models import Organization, Role
from tests.factories import UserFactory, permission
from tests.support.tokens import access_token

# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no HTTP answer (connection refused, reset, timeout)
    body: bytes
    headers: dict[str, str]
    seconds: float
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def http(
    port: int,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    timeout: float = 10.0,
) -> Answer:
    headers = {"Content-Type": "application/json", "Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = json.dumps(body).encode() if body is not None else None
    started = time.perf_counter()
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return Answer(
            response.status,
            raw,
            {k.lower(): v for k, v in response.getheaders()},
            time.perf_counter() - started,
        )
    except (OSError, httpclient.HTTPException) as exc:
        return Answer(0, b"", {}, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def clean_503(answer: Answer) -> bool:
    """The contract's answer to a dependency failure: JSON, 503, and when to retry."""
    try:
        body = answer.json()
    except ValueError:
        return False
    return (
        answer.status == 503
        and body == {"detail": "Service temporarily unavailable.", "code": "unavailable"}
        and answer.headers.get("retry-after", "").isdigit()
    )


def warm_up(ports: list[int], *, concurrency: int = 4, timeout: float = 60.0) -> None:
    """Wait until every worker of these web processes answers (gunicorn listens before its workers are ready)."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            answers: list[Answer] = []

            def probe(port: int = port, answers: list[Answer] = answers) -> None:
                answers.append(http(port, "GET", "/health/live", timeout=timeout))

            threads = [threading.Thread(target=probe) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if all(a.status == 200 and a.seconds < 1.0 for a in answers):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"web process on {port} not ready: {answers}")


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


# --------------------------------------------------------------------------------------
# The committed state: writers record it after commit, readers check answers against it.
# --------------------------------------------------------------------------------------

PERMISSION_POOL = (
    "accounts.view_organization",
    "accounts.view_role",
    "accounts.change_profile",
    "zones.view_zone",
    "zones.view_zoneassignment",
)

State = tuple[str, str | None, str | None, tuple[str, ...]]  # display name, org slug, role name, permissions


def answer_state(context: dict[str, Any]) -> State:
    organization, role = context.get("organization"), context.get("role")
    return (
        context["user"]["display_name"],
        organization["slug"] if organization else None,
        role["name"] if role else None,
        tuple(context["permissions"]),
    )


@dataclass
class _UserModel:
    display_name: str
    organization: int | None
    role: int | None


class CommittedState:
    """Users, their memberships, roles and permissions, with a global version of what is committed.

    A writer (one at a time) first lists the states its write will produce as *possible*,
    then changes the database through the project's services, and once the commit and its
    invalidations are done publishes the next version. A reader takes ``version()`` before
    sending a request: the answer must be the user's state at that version or a later
    (possibly still unpublished) one; anything older is stale.
    """

    def __init__(self, *, users: int, organizations: int = 2, roles: int = 3, prefix: str = "load") -> None:
        self._lock = threading.Lock()  # version and history: held briefly, readers never wait on a write
        self._write_lock = threading.Lock()  # one write (and its invalidation) at a time
        self._version = 0
        self._names = 0
        self.organizations = [
            Organization.objects.create(slug=f"{prefix}-org-{i}", name=f"{prefix} org {i}")
            for i in range(organizations)
        ]
        self.org_slug = {org.pk: org.slug for org in self.organizations}
        self.roles: dict[int, tuple[str, frozenset[str]]] = {}
        for i in range(roles):
            codes = frozenset(PERMISSION_POOL[i : i + 2])
            role = Role.objects.create(name=f"{prefix}-role-{i}")
            role.permissions.set([permission(code) for code in codes])
            self.roles[role.pk] = (role.name, codes)
        self.users: dict[int, _UserModel] = {}
        self.tokens: dict[int, str] = {}
        self.history: dict[int, list[tuple[int, State]]] = {}
        role_ids = list(self.roles)
        for i in range(users):
            user = UserFactory(username=f"{prefix}-user-{i}")
            organization, role = self.organizations[i % organizations].pk, role_ids[i % roles]
            services.profile_update(user_id=user.pk, display_name="v0")
            services.membership_set(user_id=user.pk, organization_id=organization, role_id=role)
            self.users[user.pk] = _UserModel("v0", organization, role)
            self.tokens[user.pk] = access_token(user)
            self.history[user.pk] = [(0, self._state(user.pk))]
        self.counts: Counter[str] = Counter()

    def _state(self, user_id: int) -> State:
        model = self.users[user_id]
        if model.organization is None or model.role is None:
            return (model.display_name, None, None, ())
        name, codes = self.roles[model.role]
        return (model.display_name, self.org_slug[model.organization], name, tuple(sorted(codes)))

    def version(self) -> int:
        with self._lock:
            return self._version

    def acceptable(self, user_id: int, since: int) -> list[State]:
        """States the user had at version ``since`` or may have had after it."""
        with self._lock:
            history = list(self.history[user_id])
        start = 0
        for index, (version, _) in enumerate(history):
            if version <= since:
                start = index
        return [state for _, state in history[start:]]

    def is_stale(self, user_id: int, since: int, context: dict[str, Any]) -> bool:
        return answer_state(context) not in self.acceptable(user_id, since)

    # -- writes -------------------------------------------------------------------------------

    def _write(
        self, kind: str, affected: Callable[[], list[int]], change: Callable[[], None], call: Callable[[], Any]
    ) -> None:
        """``change`` the model, list the resulting states as possible, ``call`` the service, publish."""
        with self._write_lock:
            change()
            with self._lock:
                for user_id in affected():
                    state = self._state(user_id)
                    if self.history[user_id][-1][1] != state:
                        self.history[user_id].append((self._version + 1, state))
            try:
                call()
            except Exception:
                # Committed or not, nobody knows: the model is read back from the database.
                self._resync()
                raise
            finally:
                with self._lock:
                    self._version += 1
            self.counts[kind] += 1

    def _resync(self) -> None:
        from accounts.models import Membership, Profile

        deadline = time.monotonic() + 15
        while True:
            try:
                close_old_connections()
                names = dict(Profile.objects.filter(user_id__in=self.users).values_list("user_id", "display_name"))
                active = {
                    m.user_id: (m.organization_id, m.role_id)
                    for m in Membership.objects.filter(user_id__in=self.users, is_active=True)
                }
                perms = {rid: set() for rid in self.roles}
                for rid, app, codename in Role.permissions.through.objects.filter(role_id__in=self.roles).values_list(
                    "role_id", "permission__content_type__app_label", "permission__codename"
                ):
                    perms[rid].add(f"{app}.{codename}")
                break
            except Exception:
                connection.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for rid, codes in perms.items():
            self.roles[rid] = (self.roles[rid][0], frozenset(codes))
        for user_id, model in self.users.items():
            model.display_name = names[user_id]
            model.organization, model.role = active.get(user_id, (None, None))
        with self._lock:
            for user_id in self.users:
                state = self._state(user_id)
                if self.history[user_id][-1][1] != state:
                    self.history[user_id].append((self._version + 1, state))

    def write_profile(self, user_id: int) -> None:
        with self._lock:
            self._names += 1
            name = f"v{self._names}"

        def change() -> None:
            self.users[user_id].display_name = name

        self._write(
            "profile", lambda: [user_id], change, lambda: services.profile_update(user_id=user_id, display_name=name)
        )

    def write_membership(self, user_id: int, rng: random.Random) -> None:
        model = self.users[user_id]
        if model.organization is not None and rng.random() < 0.2:
            target: tuple[int | None, int | None] = (None, None)

            def call() -> Any:
                return services.membership_deactivate(user_id=user_id)

        else:
            target = (rng.choice(self.organizations).pk, rng.choice(list(self.roles)))

            def call() -> Any:
                return services.membership_set(user_id=user_id, organization_id=target[0], role_id=target[1])

        def change() -> None:
            model.organization, model.role = target

        self._write("membership", lambda: [user_id], change, call)

    def write_role(self, rng: random.Random) -> None:
        role_id = rng.choice(list(self.roles))
        self._set_role_codes("role", role_id, frozenset(rng.sample(PERMISSION_POOL, rng.randint(0, 3))))

    def revoke_permission(self, rng: random.Random) -> str:
        """Take one permission away from a role some user holds; returns it."""
        held = sorted(
            {model.role for model in self.users.values() if model.role is not None and self.roles[model.role][1]}
        )
        role_id = rng.choice(held)
        revoked = rng.choice(sorted(self.roles[role_id][1]))
        self._set_role_codes("revoke", role_id, self.roles[role_id][1] - {revoked})
        return revoked

    def _set_role_codes(self, kind: str, role_id: int, codes: frozenset[str]) -> None:
        def change() -> None:
            self.roles[role_id] = (self.roles[role_id][0], codes)

        def holders() -> list[int]:
            return [uid for uid, model in self.users.items() if model.role == role_id]

        def call() -> Any:
            return services.role_set_permissions(role_id=role_id, permission_codes=sorted(codes))

        self._write(kind, holders, change, call)

    def write_random(self, rng: random.Random, kinds: tuple[str, ...]) -> None:
        kind = rng.choice(kinds)
        if kind == "role":
            self.write_role(rng)
        elif kind == "membership":
            self.write_membership(rng.choice(list(self.users)), rng)
        else:
            self.write_profile(rng.choice(list(self.users)))


# --------------------------------------------------------------------------------------
# Traffic: reader threads against web processes, writer threads in this process.
# --------------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0  # 5xx or no answer
    stale: int = 0
    worst_latency: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    unclean: int = 0  # failures other than a JSON 503 with Retry-After
    writes: int = 0
    write_errors: int = 0
    started: float = field(default_factory=time.monotonic)
    worst_by_phase: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, answer: Answer, *, stale: bool = False, phase: str = "") -> None:
        with self._lock:
            self.sent += 1
            self.statuses[answer.status] += 1
            self.worst_latency = max(self.worst_latency, answer.seconds)
            if phase:
                self.worst_by_phase[phase] = max(self.worst_by_phase.get(phase, 0.0), answer.seconds)
            if answer.status == 0 or answer.status >= 500:
                self.failed += 1
                self.unclean += not clean_503(answer)
                if len(self.samples) < 5:
                    self.samples.append(f"{answer.status} {answer.error or answer.body[:200]!r}")
            if stale:
                self.stale += 1
                if len(self.samples) < 5:
                    self.samples.append(f"stale at {time.monotonic() - self.started:.2f}s: {answer.body[:300]!r}")

    def figures(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "stale": self.stale,
            "unclean_failures": self.unclean,
            "worst_latency_ms": round(self.worst_latency * 1000, 1),
            "worst_ms_by_phase": {k: round(v * 1000, 1) for k, v in self.worst_by_phase.items()},
            "writes": self.writes,
            "statuses": dict(sorted(self.statuses.items())),
        }


class Traffic:
    """Readers call ``GET /api/me`` round-robin over ``ports`` and check every 200 against the
    committed state; writers change that state. Stops at ``stop()``, ``max_requests`` or
    ``max_seconds``, whichever comes first."""

    def __init__(
        self,
        state: CommittedState,
        ports: list[int],
        *,
        readers: int = 4,
        writers: int = 1,
        write_kinds: tuple[str, ...] = ("profile",),
        write_pause: float = 0.02,
        max_requests: int = 50_000,
        max_seconds: float = 120.0,
        seed: int = 0,
        check: Callable[[int, dict[str, Any]], bool] | None = None,
    ) -> None:
        self.state = state
        self.ports = ports
        self.tally = Tally()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._max_requests = max_requests
        self._write_kinds = write_kinds
        self._write_pause = write_pause
        self._seed = seed
        self._check = check  # an extra test of each 200 answer: True when the answer is wrong
        self._threads = [
            threading.Thread(target=self._read, args=(i,), name=f"reader-{i}", daemon=True) for i in range(readers)
        ] + [threading.Thread(target=self._write, args=(i,), name=f"writer-{i}", daemon=True) for i in range(writers)]
        self.writes_paused = threading.Event()
        #: a label the test sets ("before", "outage", "after"): worst latency is kept per phase
        self.phase = "before"

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline and self.tally.sent < self._max_requests

    def _read(self, index: int) -> None:
        rng = random.Random(self._seed * 1000 + index)
        users = list(self.state.users)
        n = index
        while self._running():
            user_id = rng.choice(users)
            port = self.ports[n % len(self.ports)]
            n += 1
            since = self.state.version()
            phase = self.phase
            answer = http(port, "GET", "/api/me", token=self.state.tokens[user_id])
            stale = answer.status == 200 and (
                self.state.is_stale(user_id, since, answer.json())
                or (self._check is not None and self._check(user_id, answer.json()))
            )
            self.tally.add(answer, stale=stale, phase=phase)

    def _write(self, index: int) -> None:
        rng = random.Random(self._seed * 1000 + 500 + index)
        try:
            while self._running():
                if self.writes_paused.is_set():
                    time.sleep(0.01)
                    continue
                try:
                    self.state.write_random(rng, self._write_kinds)
                    with self.tally._lock:
                        self.tally.writes += 1
                except Exception as exc:  # a write refused by a broken database: counted, not fatal
                    with self.tally._lock:
                        self.tally.write_errors += 1
                        if len(self.tally.samples) < 5:
                            self.tally.samples.append(f"write error: {type(exc).__name__}: {exc}"[:200])
                    close_old_connections()
                    connection.close()
                time.sleep(self._write_pause)
        finally:
            connection.close()

    def start(self) -> Traffic:
        # Every worker has imported and served /api/me once: cold starts are not the fault's.
        for port in self.ports:
            for user_id in list(self.state.users)[:8]:
                http(port, "GET", "/api/me", token=self.state.tokens[user_id], timeout=30)
        self.tally.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.tally

    def run_for(self, seconds: float) -> None:
        """Let traffic flow for ``seconds`` (bounded by the traffic's own limits)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and self._running():
            time.sleep(0.05)

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log_lines(path: Path) -> Iterator[dict[str, Any]]:
    """JSON log lines of a server process (other lines are skipped)."""
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def soak_seconds(default: float) -> float:
    """``SOAK_SECONDS`` when set (a longer run, e.g. ``SOAK_SECONDS=120 make test``), else ``default``."""
    raw = os.environ.get("SOAK_SECONDS", "").strip()
    return float(raw) if raw else default
