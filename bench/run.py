"""The benchmark: ``python -m bench.run [--quick] [--workers N]`` (``scripts/bench.sh`` sets it up).

One run measures, on this machine, every mode of ``bench.settings_peers`` with real gunicorn
sync workers, PostgreSQL and Redis, one mode at a time, and writes
``bench/results/<timestamp>.{json,md,png}`` plus ``latest.md`` / ``latest.png``.
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql

from bench import report
from bench.pgstats import FLUSH_SQL

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "wrk_rotate.lua"

MODES = ["floor", "naive", "cachalot", "simplejwt", "ours-local", "ours-redis", "ours-redis-direct"]
# What the quick variant leaves out (it answers "how much did the near cache buy", not a target).
FULL_ONLY = {"ours-redis-direct"}
TOKEN_KIND = {
    "floor": "ours",
    "naive": "naive",
    "cachalot": "naive",
    "simplejwt": "simplejwt",
    "ours-local": "ours",
    "ours-redis": "ours",
    "ours-redis-direct": "ours",
}
USES_REDIS = {"cachalot", "ours-redis", "ours-redis-direct"}
CACHED = {"cachalot", "ours-local", "ours-redis", "ours-redis-direct"}
SECRET_KEY = "bench-secret-key-not-for-production-0123456789abcdefghijklmnop"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the same definition wrk uses)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    workers: int
    duration: int
    warmup: int
    concurrency: list[int]
    users: int
    token_users: int
    cold_levels: list[int]
    cold_samples: int
    counted_seconds: int
    body_users: int
    login_samples: int
    modes: list[str]
    pg_admin_url: str
    db_name: str
    redis_host: str
    redis_port: int
    redis_db: int
    key_prefix: str
    port: int
    wrk_threads: int
    keep_logs: bool
    rounds: int
    gunicorn_args: list[str]
    log_statements: bool
    db_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter phases (about 2 minutes)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers per mode (default 4)")
    parser.add_argument("--duration", type=int, help="seconds per load phase (default 6, quick 3)")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved phases (default 3, quick 1)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per mode (default 5, quick 1)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="connections (default 8 32 100; quick 32 100)")
    parser.add_argument("--users", type=int, default=1000, help="users seeded for the load phases")
    parser.add_argument("--token-users", type=int, help="users whose tokens rotate (default 200, quick 100)")
    parser.add_argument("--cold-levels", type=int, nargs="+", help="users in the database for cold GETs")
    parser.add_argument("--cold-samples", type=int, help="cold GETs per level (default 150, quick 30)")
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, help="default: every mode (quick: all but ours-redis-direct)"
    )
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--db-name", default=os.environ.get("BENCH_DB_NAME", "authctx_bench"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--key-prefix", default="authctx_bench")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "18765")))
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory (server logs, tokens)")
    parser.add_argument(
        "--gunicorn-arg",
        action="append",
        default=[],
        help="extra gunicorn argument, repeatable (e.g. --gunicorn-arg=--worker-class=gthread); default: none",
    )
    parser.add_argument("--log-statements", action="store_true", help="log every SQL statement of the bench database")
    args = parser.parse_args(argv)
    quick = args.quick
    redis_url = args.redis
    match = re.fullmatch(r"redis://([^:/]+):(\d+)/(\d+)", redis_url)
    if not match:
        parser.error("--redis must look like redis://host:port/db")
    return Config(
        quick=quick,
        workers=args.workers,
        duration=args.duration or (3 if quick else 6),
        warmup=args.warmup or (1 if quick else 5),
        concurrency=args.concurrency or ([32, 100] if quick else [8, 32, 100]),
        users=args.users,
        token_users=args.token_users or (100 if quick else 200),
        cold_levels=args.cold_levels or ([1000, 100_000] if quick else [1000, 100_000, 1_000_000]),
        cold_samples=args.cold_samples or (30 if quick else 150),
        counted_seconds=2 if quick else 4,
        body_users=20 if quick else 100,
        login_samples=3 if quick else 20,
        modes=args.modes or [m for m in MODES if not (quick and m in FULL_ONLY)],
        pg_admin_url=args.pg,
        db_name=args.db_name,
        redis_host=match.group(1),
        redis_port=int(match.group(2)),
        redis_db=int(match.group(3)),
        key_prefix=args.key_prefix,
        port=args.port,
        wrk_threads=2,
        keep_logs=args.keep_logs,
        rounds=args.rounds or (1 if quick else 3),
        gunicorn_args=list(args.gunicorn_arg),
        log_statements=args.log_statements,
    )


# --------------------------------------------------------------------------------------
# PostgreSQL: the database, and statement counts as PostgreSQL itself sees them
# --------------------------------------------------------------------------------------


class Postgres:
    """Counts statements run in the bench database, server side.

    With ``pg_stat_statements`` preloaded: the sum of its ``calls`` for the database. Without it
    (this machine): ``xact_commit + xact_rollback`` of ``pg_stat_database``. Every statement the
    measured paths run is in autocommit, so one statement is one transaction; a backend publishes
    its counts at most once a second, so the caller first makes every pooled backend publish
    (``/bench/pgflush``) and subtracts the statements that took.
    """

    def __init__(self, admin_url: str, db_name: str) -> None:
        self.admin_url = admin_url
        self.db_name = db_name
        self.admin = psycopg.connect(admin_url, autocommit=True)
        preload = self.admin.execute("SHOW shared_preload_libraries").fetchone()
        self.pgss = bool(preload and "pg_stat_statements" in str(preload[0]))
        self.method = (
            "pg_stat_statements (sum of calls in the bench database)"
            if self.pgss
            else "pg_stat_statements is not preloaded here, so: pg_stat_database.xact_commit + xact_rollback - "
            "sessions of the bench database (every measured statement runs in autocommit, so one statement is one "
            "transaction; a new connection's start-up transaction is taken off through sessions), read after every "
            "pooled backend published its counters (pg_stat_force_next_flush() on each pooled connection of each "
            "worker, those flush statements subtracted)"
        )
        self.version = str(self.admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def db_url(self) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{self.db_name}"

    def recreate(self, *, log_statements: bool = False) -> None:
        ident = sql.Identifier(self.db_name)
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        # Django runs set_config('TimeZone') on every new connection whose zone is not UTC;
        # a UTC database keeps connection set-up free of statements, as a production one would.
        self.admin.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'UTC'").format(ident))
        if log_statements:  # debugging the counts: the server log then shows every statement
            self.admin.execute(sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(ident))
        if self.pgss:
            with psycopg.connect(self.db_url(), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute(FLUSH_SQL)

    def statements(self) -> int:
        if self.pgss:
            with psycopg.connect(self.db_url(), autocommit=True) as conn:
                row = conn.execute(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                    "WHERE d.datname = %s AND s.query NOT LIKE %s AND s.query NOT LIKE %s",
                    [self.db_name, "%pg_stat_force_next_flush%", "%pg_stat_statements%"],
                ).fetchone()
            return int(row[0]) if row else 0
        # A new connection runs one transaction of its own while starting (and counts a session).
        row = self.admin.execute(
            "SELECT xact_commit + xact_rollback - sessions FROM pg_stat_database WHERE datname = %s", [self.db_name]
        ).fetchone()
        return int(row[0]) if row else 0

    def run_in_db(self, statements: Iterable[Any], params: dict[str, Any] | None = None) -> None:
        """Run statements in the bench database on a short-lived connection that publishes its stats."""
        with psycopg.connect(self.db_url(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement, params or {})
            conn.execute(FLUSH_SQL)

    def columns(self, table: str) -> list[tuple[str, str, bool, bool]]:
        with psycopg.connect(self.db_url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT column_name, data_type, is_nullable = 'YES', "
                "(column_default IS NOT NULL OR is_identity = 'YES') FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                [table],
            ).fetchall()
            conn.execute(FLUSH_SQL)
        return [(str(r[0]), str(r[1]), bool(r[2]), bool(r[3])) for r in rows]

    def grow_users(self, meta: dict[str, Any], target: int) -> float:
        """Add users (with profiles and memberships) by generate_series up to id ``target``."""
        started = time.perf_counter()
        tables = meta["tables"]
        with psycopg.connect(self.db_url(), autocommit=True) as conn:
            row = conn.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(tables["user"]))).fetchone()
        low = int(row[0] or 0) + 1 if row else 1
        if low > target:
            return 0.0
        orgs, roles = meta["organization_ids"], meta["role_ids"]
        known = {
            "user": {
                "id": "g",
                "password": "%(hash)s",
                "username": "'bulk' || g",
                "email": "'bulk' || g || '@example.com'",
                "is_active": "true",
                "date_joined": "now()",
            },
            "profile": {"user_id": "g", "display_name": "'Bulk User ' || g", "locale": "'en'", "timezone": "'UTC'"},
            "membership": {
                "user_id": "g",
                "organization_id": f"(ARRAY{list(map(int, orgs))}::bigint[])[mod(g, {len(orgs)}) + 1]",
                "role_id": f"(ARRAY{list(map(int, roles))}::bigint[])[mod(g, {len(roles)}) + 1]",
                "is_active": "true",
                "created_at": "now()",
            },
        }
        statements = []
        for kind in ("user", "profile", "membership"):
            names, values = [], []
            for column, data_type, nullable, has_default in self.columns(tables[kind]):
                expression = known[kind].get(column)
                if expression is None:
                    if has_default or nullable:
                        continue
                    expression = _filler(data_type)
                names.append(sql.Identifier(column))
                values.append(sql.SQL(expression))
            insert = "INSERT INTO {} ({}) SELECT {} FROM generate_series(%(low)s::bigint, %(high)s::bigint) g"
            statements.append(
                sql.SQL(insert).format(
                    sql.Identifier(tables[kind]), sql.SQL(", ").join(names), sql.SQL(", ").join(values)
                )
            )
        statements.append(
            sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), %(high)s::bigint)").format(
                sql.Literal(tables["user"])
            )
        )
        statements += [sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(tables[k])) for k in tables]
        self.run_in_db(statements, {"low": low, "high": target, "hash": meta["shared_password_hash"]})
        return time.perf_counter() - started


def _filler(data_type: str) -> str:
    if data_type == "boolean":
        return "false"
    if data_type in ("integer", "bigint", "smallint", "numeric", "real", "double precision"):
        return "0"
    if data_type.startswith("timestamp"):
        return "now()"
    if data_type == "date":
        return "current_date"
    if data_type in ("json", "jsonb"):
        return "'{}'"
    return "''"


# --------------------------------------------------------------------------------------
# Redis: command counts (server-wide INFO commandstats, exact per-db counts with MONITOR)
# --------------------------------------------------------------------------------------


class RedisProbe:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.client = redis.Redis(host=cfg.redis_host, port=cfg.redis_port, db=cfg.redis_db)
        self.version = str(self.client.info("server").get("redis_version"))

    def flush_own_db(self) -> None:
        self.client.flushdb()

    def commandstats(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name.removeprefix("cmdstat_") not in ("info", "monitor", "echo")
        }

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        keys = set(before) | set(after)
        out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        return {k: v for k, v in sorted(out.items()) if v}

    def memory(self, key_prefix: str, user_ids: list[int]) -> dict[str, Any]:
        sizes, payloads = [], []
        for uid in user_ids:
            key = f"{key_prefix}:e:user_context:{uid}"
            usage = self.client.memory_usage(key, samples=0)
            if usage is None:
                continue
            sizes.append(int(usage))
            payloads.append(int(self.client.hstrlen(key, "p")))
        if not sizes:
            return {"entries": 0}
        return {
            "entries": len(sizes),
            "memory_usage_bytes": {
                "mean": round(statistics.fmean(sizes), 1),
                "min": min(sizes),
                "max": max(sizes),
                "median": statistics.median(sizes),
            },
            "payload_bytes": {"mean": round(statistics.fmean(payloads), 1), "min": min(payloads), "max": max(payloads)},
            "key_example": f"{key_prefix}:e:user_context:{user_ids[0]}",
        }


class Monitor:
    """Counts the commands Redis runs for one database: top level (client round trips) and inside Lua."""

    LINE = re.compile(rb'^\S+ \[(\d+) ([^\]]*)\] "([^"]*)"')

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.marker = f"bench-monitor-stop-{uuid.uuid4().hex}"
        self.top: dict[str, int] = {}
        self.lua: dict[str, int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: str | None = None

    def __enter__(self) -> Monitor:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("MONITOR did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        client = redis.Redis(host=self.cfg.redis_host, port=self.cfg.redis_port, db=self.cfg.redis_db)
        client.echo(self.marker)
        self._thread.join(15)
        client.close()

    def _run(self) -> None:
        sock = socket.create_connection((self.cfg.redis_host, self.cfg.redis_port), timeout=30)
        try:
            sock.sendall(b"MONITOR\r\n")
            reader = sock.makefile("rb")
            if not reader.readline().startswith(b"+OK"):
                self.error = "MONITOR refused"
                return
            self._ready.set()
            marker = self.marker.encode()
            wanted = str(self.cfg.redis_db).encode()
            while True:
                line = reader.readline()
                if not line:
                    return
                if marker in line:
                    return
                match = self.LINE.match(line[1:] if line.startswith(b"+") else line)
                if not match or match.group(1) != wanted:
                    continue
                command = match.group(3).decode(errors="replace").lower()
                bucket = self.lua if match.group(2) == b"lua" else self.top
                bucket[command] = bucket.get(command, 0) + 1
        except Exception as exc:  # the counts are then reported as missing
            self.error = repr(exc)
            self._ready.set()
        finally:
            sock.close()


# --------------------------------------------------------------------------------------
# gunicorn
# --------------------------------------------------------------------------------------


class Server:
    def __init__(
        self, cfg: Config, mode: str, env: dict[str, str], run_dir: Path, port: int, extra_args: list[str] | None = None
    ) -> None:
        self.cfg = cfg
        self.mode = mode
        self.port = port
        self.extra_args = extra_args if extra_args is not None else cfg.gunicorn_args
        self.env = env
        self.log_path = run_dir / f"gunicorn-{mode}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_answers: list[dict[str, Any]] = []

    def start(self) -> float:
        started = time.perf_counter()
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "project.wsgi",
                "--config",
                "python:bench.gunicorn_hooks",
                "--workers",
                str(self.cfg.workers),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--preload",
                "--backlog",
                "2048",
                "--timeout",
                "60",
                "--log-level",
                "warning",
                *self.extra_args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn for {self.mode} exited; see {self.log_path}")
            if len(self.worker_pids()) >= self.cfg.workers:
                try:
                    status, _, _ = http_request(self.port, "GET", "/bench/pgflush", {})
                    if status == 200:
                        break
                except OSError:
                    pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"gunicorn for {self.mode} did not become ready; see {self.log_path}")
        return time.perf_counter() - started

    def worker_pids(self) -> set[int]:
        if self.proc is None:
            return set()
        master = self.proc.pid
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(master):
                pids.add(int(entry.name))
        return pids

    def sweep(self, path: str, *, parallel: bool = False) -> dict[int, dict[str, Any]]:
        """GET ``path`` until every worker has answered; returns each worker's last answer.

        Sequential requests land on the workers in turn; ``parallel`` sends one per worker at
        once (a busy sync worker leaves the next connection to an idle one).
        """
        expected = self.worker_pids()
        answers: dict[int, dict[str, Any]] = {}
        extra: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        attempt = 0
        while attempt < 100 or time.monotonic() < deadline:
            attempt += 1
            if attempt > 100:
                time.sleep(0.05)
            # Sequential requests may keep landing on the same few idle workers (whichever
            # wins accept()); after a while, one request per missing worker goes out at once.
            batch = max(1, len(expected - set(answers))) if parallel or attempt >= 10 else 1
            replies: list[dict[str, Any]] = []

            def call(replies: list[dict[str, Any]] = replies) -> None:
                status, body, _ = http_request(self.port, "GET", path, {})
                if status != 200:
                    raise RuntimeError(f"{path} answered {status}")
                replies.append(json.loads(body))

            threads = [threading.Thread(target=call) for _ in range(batch)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for reply in replies:
                pid = int(reply["pid"])
                if pid in answers:
                    extra.append(answers[pid])
                answers[pid] = reply
            if expected <= set(answers):
                self.extra_answers = extra
                return answers
        missing = sorted(expected - set(answers))
        states = {pid: _proc_state(pid) for pid in missing}
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        for pid in missing:
            dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False)
            log(f"worker {pid} did not answer {path}:\n{dump.stdout[-3000:]}{dump.stderr[-500:]}")
        raise RuntimeError(f"{path} did not reach every worker ({len(answers)}/{len(expected)}; missing {states})")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        self.proc = None


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "gone"


def http_request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": "127.0.0.1", **headers})
        response = conn.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - started
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def run_wrk(cfg: Config, port: int, connections: int, duration: int, tokens: Path) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{min(cfg.wrk_threads, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}/api/me",
        "--",
        str(tokens),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return dict(json.loads(line.removeprefix("BENCHJSON ")))
    raise RuntimeError(f"wrk printed no result: {out.stdout[-500:]} {out.stderr[-500:]}")


@dataclass
class Counters:
    statements: int
    commandstats: dict[str, int]
    requests: dict[str, int]
    flush_statements: int


class Meter:
    """Server-side counters: SQL statements, Redis commands, and requests served by path."""

    def __init__(self, pg: Postgres, probe: RedisProbe, server: Server) -> None:
        self.pg, self.probe, self.server = pg, probe, server

    @staticmethod
    def drain(server: Server) -> tuple[dict[str, int], int]:
        """Sweeps ``/bench/pgflush`` until the server's request counts stop moving (wrk's last
        requests served, every backend's statistics published); returns the counts by path and
        the statements the sweeps ran."""
        flushed, previous = 0, None
        requests: dict[str, int] = {}
        for _ in range(60):
            answers = server.sweep("/bench/pgflush")
            flushed += sum(int(a["statements"]) for a in [*answers.values(), *server.extra_answers])
            requests = {}
            for answer in answers.values():
                for path, count in answer["requests"].items():
                    if not path.startswith("/bench/"):
                        requests[path] = requests.get(path, 0) + int(count)
            if requests == previous:
                break
            previous = requests
            time.sleep(0.05)
        return requests, flushed

    def read(self) -> Counters:
        requests, flushed = self.drain(self.server)
        return Counters(self.pg.statements(), self.probe.commandstats(), requests, flushed)

    def between(self, before: Counters, after: Counters) -> dict[str, Any]:
        statements = after.statements - before.statements - (0 if self.pg.pgss else after.flush_statements)
        commands = RedisProbe.delta(before.commandstats, after.commandstats)
        served = {k: v - before.requests.get(k, 0) for k, v in after.requests.items()}
        served = {k: v for k, v in served.items() if v}
        return {
            "sql_statements": statements,
            "redis_commands": sum(commands.values()),
            "redis_by_command": commands,
            "served": served,
            "served_total": sum(served.values()),
        }


def load_phase(cfg: Config, meter: Meter, connections: int, tokens: Path, duration: int) -> dict[str, Any]:
    before = meter.read()
    load_before = os.getloadavg()[0]
    result = run_wrk(cfg, meter.server.port, connections, duration, tokens)
    load_after = os.getloadavg()[0]
    counts = meter.between(before, meter.read())
    served = max(1, counts["served_total"])
    seconds = result["duration_us"] / 1e6
    errors = {
        "non2xx": int(result["non2xx"]),
        "connect": int(result["err_connect"]),
        "read": int(result["err_read"]),
        "write": int(result["err_write"]),
        "timeout": int(result["err_timeout"]),
    }
    return {
        "connections": connections,
        "requests": int(result["requests"]),
        "served_by_server": counts["served_total"],
        "seconds": round(seconds, 3),
        "rps": round(result["requests"] / seconds, 1),
        "p50_ms": round(result["p50_us"] / 1000, 2),
        "p90_ms": round(result["p90_us"] / 1000, 2),
        "p99_ms": round(result["p99_us"] / 1000, 2),
        "p999_ms": round(result["p999_us"] / 1000, 2),
        "max_ms": round(result["lat_max_us"] / 1000, 2),
        "bytes_per_response": round(result["bytes"] / max(1, int(result["requests"])), 1),
        "errors": errors,
        "errors_total": sum(errors.values()),
        "sql_statements": counts["sql_statements"],
        "sql_per_req": counts["sql_statements"] / served,
        "redis_commands": counts["redis_commands"],
        "redis_per_req": counts["redis_commands"] / served,
        "redis_by_command": counts["redis_by_command"],
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
    }


def exact_counts(cfg: Config, meter: Meter, run: Any) -> dict[str, Any]:
    """Runs ``run()`` with MONITOR on the bench Redis database; per served request: SQL statements,
    Redis commands sent by clients (round trips) and run inside Lua scripts."""
    before = meter.read()
    with Monitor(cfg) as monitor:
        extra = run()
        after = meter.read()  # drained: every served request's commands were seen
    counts = meter.between(before, after)
    n = max(1, counts["served_total"])
    top, lua = sum(monitor.top.values()), sum(monitor.lua.values())
    ok = monitor.error is None
    return {
        "served": counts["served"],
        "sql_statements": counts["sql_statements"],
        "sql_per_req": counts["sql_statements"] / n,
        "redis_roundtrips_per_req": top / n if ok else None,
        "redis_in_lua_per_req": lua / n if ok else None,
        "redis_top_by_command": dict(sorted(monitor.top.items())),
        "redis_lua_by_command": dict(sorted(monitor.lua.items())),
        "monitor_error": monitor.error,
        **(extra or {}),
    }


def sequential(
    port: int, requests: list[tuple[str, str, dict[str, str], bytes | None]], keep_bodies: bool = False
) -> dict[str, Any]:
    results = [http_request(port, m, p, h, b) for m, p, h, b in requests]
    latencies = [r[2] * 1000 for r in results]
    statuses: dict[str, int] = {}
    for status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    out: dict[str, Any] = {
        "requests": len(results),
        "statuses": statuses,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "max_ms": round(max(latencies), 2),
    }
    if keep_bodies:
        out["bodies"] = [r[1] for r in results]
    return out


def base_env(cfg: Config, db_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "DATABASE_URL",
            "CACHE_KEY_PREFIX",
            "PROMETHEUS_MULTIPROC_DIR",
            "DEBUG",
            "LOG_LEVEL",
            "LOG_FORMAT",
        }
    }
    env.update(
        {
            "SECRET_KEY": SECRET_KEY,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": db_url,
            "DJANGO_SETTINGS_MODULE": "bench.settings_peers",
            "CACHE_KEY_PREFIX": cfg.key_prefix,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def mode_env(cfg: Config, base: dict[str, str], mode: str, run_dir: Path) -> dict[str, str]:
    env = dict(
        base,
        BENCH_MODE=mode,
        BENCH_FLOOR_PAYLOAD=str(run_dir / "floor.json"),
        BENCH_TOKENS_FILE=str(run_dir / f"tokens-{TOKEN_KIND[mode]}.txt"),
    )
    if mode in USES_REDIS:
        env["REDIS_URL"] = f"redis://{cfg.redis_host}:{cfg.redis_port}/{cfg.redis_db}"
    if mode == "cachalot":
        env["CACHE_KEY_PREFIX"] = f"{cfg.key_prefix}_cachalot"
    if mode == "ours-redis-direct":  # the project with its near cache off: one EVALSHA per request
        env["CACHE_NEAR_MAX_ENTRIES"] = "0"
    return env


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in (
        "Django",
        "djangorestframework",
        "djangorestframework-simplejwt",
        "django-cachalot",
        "django-redis",
        "redis",
        "psycopg",
        "PyJWT",
        "gunicorn",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    out["wrk"] = (wrk.stdout or wrk.stderr).split("\n")[0].strip()
    return out


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(tempfile.mkdtemp(prefix=f"authctx-bench-{stamp}-"))
    pg = Postgres(cfg.pg_admin_url, cfg.db_name)
    probe = RedisProbe(cfg)
    env = base_env(cfg, pg.db_url())
    results: dict[str, Any] = {
        "timestamp": stamp,
        "quick": cfg.quick,
        "git": git_state(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {**versions(), "postgresql": pg.version, "redis-server": probe.version},
        "config": {
            "workers": cfg.workers,
            "worker_class": "sync",
            "gunicorn_args": cfg.gunicorn_args,
            "wrk_threads": cfg.wrk_threads,
            "duration_s": cfg.duration,
            "rounds": cfg.rounds,
            "warmup_s": cfg.warmup,
            "concurrency": cfg.concurrency,
            "users": cfg.users,
            "token_users": cfg.token_users,
            "cold_levels": cfg.cold_levels,
            "cold_samples": cfg.cold_samples,
            "counted_seconds": cfg.counted_seconds,
            "login_samples": cfg.login_samples,
            "database": cfg.db_name,
            "redis": f"{cfg.redis_host}:{cfg.redis_port}/{cfg.redis_db}",
            "key_prefix": cfg.key_prefix,
        },
        "sql_count_method": pg.method,
        "modes": {},
    }

    meta = setup_database(cfg, pg, probe, env, run_dir)
    results["context_bytes"] = meta["context_bytes"]
    results["setup_s"] = round(time.perf_counter() - started, 1)

    servers: dict[str, Server] = {}
    bodies: dict[str, list[bytes]] = {}
    try:
        for index, mode in enumerate(cfg.modes):
            servers[mode] = Server(cfg, mode, mode_env(cfg, env, mode, run_dir), run_dir, cfg.port + index)
            results["modes"][mode] = prepare_mode(cfg, servers[mode], run_dir)
        run_rounds(cfg, servers, pg, probe, run_dir, results)
        for server in servers.values():
            finish_mode(cfg, server, pg, probe, run_dir, meta, results, bodies)
            server.stop()
    finally:
        for server in servers.values():
            server.stop()
        results["total_s"] = round(time.perf_counter() - started, 1)
    results["bodies_identical"] = compare_bodies(bodies, meta)

    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{stamp}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    png = RESULTS / f"{stamp}.png"
    report.chart(results, png)
    md = RESULTS / f"{stamp}.md"
    md.write_text(report.markdown(results, png.name))
    shutil.copyfile(png, RESULTS / "latest.png")
    (RESULTS / "latest.md").write_text(report.markdown(results, "latest.png"))
    log(f"wrote {json_path.relative_to(ROOT)}, {md.relative_to(ROOT)}, {png.relative_to(ROOT)} and latest.*")
    print(report.summary(results))
    if cfg.keep_logs:
        log(f"run directory kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    log(f"done in {results['total_s']} s")
    return 0


def setup_database(cfg: Config, pg: Postgres, probe: RedisProbe, env: dict[str, str], run_dir: Path) -> dict[str, Any]:
    """Recreate the bench database, migrate, seed; empty the bench Redis database. Returns the seed's meta."""
    log(f"database {cfg.db_name}: recreate, migrate, seed {cfg.users} users ({cfg.token_users} with tokens)")
    pg.recreate(log_statements=cfg.log_statements)
    setup_env = dict(env, BENCH_ALL_APPS="1", BENCH_MODE="ours-local")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=setup_env, check=True)
    seed_cmd = [sys.executable, "-m", "bench.seed", str(run_dir), "--users", str(cfg.users)]
    seed_cmd += ["--token-users", str(cfg.token_users), "--cold-samples", str(cfg.cold_samples), "--cold-levels"]
    seed_cmd += [str(level) for level in cfg.cold_levels]
    subprocess.run(seed_cmd, cwd=ROOT, env=setup_env, check=True, stdout=subprocess.DEVNULL)
    pg.run_in_db([sql.SQL("VACUUM ANALYZE")])
    probe.flush_own_db()
    return dict(json.loads((run_dir / "meta.json").read_text()))


def tokens_of(run_dir: Path, mode: str) -> tuple[Path, list[str]]:
    path = run_dir / f"tokens-{TOKEN_KIND[mode]}.txt"
    return path, [t for t in path.read_text().split("\n") if t]


def prepare_mode(cfg: Config, server: Server, run_dir: Path) -> dict[str, Any]:
    """Start the mode's server, fill its caches, warm it up with wrk."""
    mode = server.mode
    tokens_path, _ = tokens_of(run_dir, mode)
    out: dict[str, Any] = {"port": server.port}
    log(f"{mode}: starting {cfg.workers} gunicorn sync workers on port {server.port}")
    out["startup_s"] = round(server.start(), 2)
    if mode in CACHED:
        # Every worker replays every token once in-process, so caches (each worker's
        # in-process one too) are full before wrk starts.
        warm_started = time.perf_counter()
        if mode == "ours-local":
            server.sweep("/bench/warm", parallel=True)
        else:  # a shared cache: one worker fills it for all
            http_request(server.port, "GET", "/bench/warm", {})
        out["cache_warm_s"] = round(time.perf_counter() - warm_started, 2)
    warm = run_wrk(cfg, server.port, 32, cfg.warmup, tokens_path)
    out["warmup"] = {"seconds": cfg.warmup, "requests": warm["requests"], "non2xx": warm["non2xx"]}
    if warm["non2xx"]:  # a broken mode would be measured as a fast error page: stop here
        _, tokens = tokens_of(run_dir, mode)
        status, body, _ = http_request(server.port, "GET", "/api/me", {"Authorization": tokens[0]})
        raise RuntimeError(f"{mode} answered {status} during warm-up: {body[:300]!r}; see {server.log_path}")
    out["rounds"] = []
    if not server.extra_args:  # (other worker classes do not spread sweeps over every worker)
        Meter.drain(server)  # publish now what the warm-up ran, before another mode's phase reads counters
    return out


def run_rounds(
    cfg: Config, servers: dict[str, Server], pg: Postgres, probe: RedisProbe, run_dir: Path, results: dict[str, Any]
) -> None:
    """Load phases: one mode at a time, the modes interleaved (order rotated each round), so a change
    in the machine's background load touches every mode alike instead of whichever ran then."""
    modes = list(servers)
    for round_index in range(cfg.rounds):
        order = modes[round_index % len(modes) :] + modes[: round_index % len(modes)]
        for connections in cfg.concurrency:
            for mode in order:
                server = servers[mode]
                tokens_path, _ = tokens_of(run_dir, mode)
                phase = load_phase(cfg, Meter(pg, probe, server), connections, tokens_path, cfg.duration)
                phase["round"] = round_index + 1
                results["modes"][mode]["rounds"].append(phase)
                log(
                    f"round {round_index + 1} {mode} c={connections}: {phase['rps']:.0f} req/s "
                    f"p50 {phase['p50_ms']} ms p99 {phase['p99_ms']} ms sql/req {phase['sql_per_req']:.4f} "
                    f"redis/req {phase['redis_per_req']:.3f} errors {phase['errors_total']}"
                )
    for mode in modes:
        data = results["modes"][mode]
        data["phases"] = [combine([p for p in data["rounds"] if p["connections"] == c]) for c in cfg.concurrency]


def combine(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per mode and concurrency: medians of the rounds' rates and latencies, totals of counts."""
    out: dict[str, Any] = {"connections": phases[0]["connections"], "rounds": len(phases)}
    for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "bytes_per_response"):
        out[key] = round(statistics.median(p[key] for p in phases), 2)
    out["rps_by_round"] = [p["rps"] for p in phases]
    out["p99_ms_by_round"] = [p["p99_ms"] for p in phases]
    for key in ("requests", "served_by_server", "sql_statements", "redis_commands", "errors_total"):
        out[key] = sum(p[key] for p in phases)
    out["errors"] = {k: sum(p["errors"][k] for p in phases) for k in phases[0]["errors"]}
    served = max(1, out["served_by_server"])
    out["sql_per_req"] = out["sql_statements"] / served
    out["redis_per_req"] = out["redis_commands"] / served
    by_command: dict[str, int] = {}
    for p in phases:
        for k, v in p["redis_by_command"].items():
            by_command[k] = by_command.get(k, 0) + v
    out["redis_by_command"] = dict(sorted(by_command.items()))
    out["max_ms"] = max(p["max_ms"] for p in phases)
    return out


def finish_mode(
    cfg: Config,
    server: Server,
    pg: Postgres,
    probe: RedisProbe,
    run_dir: Path,
    meta: dict[str, Any],
    results: dict[str, Any],
    bodies: dict[str, list[bytes]],
) -> None:
    """Exact Redis counts under load, response bodies, login and cold requests, cache entry sizes."""
    mode = server.mode
    out = results["modes"][mode]
    tokens_path, tokens = tokens_of(run_dir, mode)
    meter = Meter(pg, probe, server)

    def burst() -> dict[str, Any]:
        result = run_wrk(cfg, server.port, 32, cfg.counted_seconds, tokens_path)
        return {"wrk_requests": result["requests"], "non2xx": result["non2xx"]}

    if mode in USES_REDIS:
        out["counted"] = counted = exact_counts(cfg, meter, burst)
        log(
            f"{mode} exact Redis counts under load: round trips/req {counted['redis_roundtrips_per_req']:.4f}, "
            f"in Lua/req {counted['redis_in_lua_per_req']:.4f} (sql/req {counted['sql_per_req']:.4f})"
        )
    sample = [("GET", "/api/me", {"Authorization": t}, None) for t in tokens[: cfg.body_users]]
    bodies_pass = sequential(server.port, sample, keep_bodies=True)
    bodies[mode] = bodies_pass.pop("bodies")
    out["body_bytes"] = round(statistics.fmean(len(b) for b in bodies[mode]), 1)
    out["sequential"] = bodies_pass
    if mode in ("naive", "ours-redis"):
        out["login"] = login_pass(cfg, meter, meta)
        log(f"{mode} login: p50 {out['login']['p50_ms']} ms p99 {out['login']['p99_ms']} ms")
    if mode == "ours-redis":
        results["memory"] = probe.memory(cfg.key_prefix, meta["token_users"])
        results["cold"] = cold_passes(cfg, meter, pg, meta)


def login_pass(cfg: Config, meter: Meter, meta: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"username": meta["login"]["username"], "password": meta["login"]["password"]}).encode()
    headers = {"Content-Type": "application/json"}
    requests = [("POST", "/api/auth/login", headers, body) for _ in range(cfg.login_samples)]
    return exact_counts(cfg, meter, lambda: sequential(meter.server.port, requests))


def cold_passes(cfg: Config, meter: Meter, pg: Postgres, meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    port = meter.server.port
    for level in cfg.cold_levels:
        grown = pg.grow_users(meta, level) if level > cfg.users else 0.0
        pairs = meta["cold"][str(level)]
        requests = [("GET", "/api/me", {"Authorization": header}, None) for _, header in pairs]
        cold = exact_counts(cfg, meter, lambda requests=requests: sequential(port, requests))
        warm = exact_counts(cfg, meter, lambda requests=requests: sequential(port, requests))
        out[str(level)] = {"seed_s": round(grown, 1), "cold": cold, "warm_again": warm}
        log(
            f"cold GET /api/me with {level} users (seeded in {grown:.1f} s): p50 {cold['p50_ms']} ms "
            f"p99 {cold['p99_ms']} ms (sql/req {cold['sql_per_req']:.2f}; warm again p50 {warm['p50_ms']} ms)"
        )
    return out


def compare_bodies(bodies: dict[str, list[bytes]], meta: dict[str, Any]) -> dict[str, Any]:
    """Every authenticated mode must return the same bytes for the same user."""
    reference_mode = next((m for m in ("ours-redis", "ours-local") if m in bodies), None)
    if reference_mode is None:
        return {"checked": False}
    reference = bodies[reference_mode]
    mismatches = {}
    for mode, values in bodies.items():
        if mode == "floor":
            continue
        bad = [meta["token_users"][i] for i, (a, b) in enumerate(zip(reference, values, strict=False)) if a != b]
        if bad:
            mismatches[mode] = bad[:5]
    floor = bodies.get("floor", [b""])[0]
    return {
        "checked": True,
        "reference": reference_mode,
        "users_compared": len(reference),
        "mismatches": mismatches,
        "identical": not mismatches,
        "floor_body_bytes": len(floor),
    }


if __name__ == "__main__":
    raise SystemExit(main())
