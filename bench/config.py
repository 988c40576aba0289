"""What a run measures and with what: paths, modes, the command line (``Config``), and the log line."""

from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "wrk_rotate.lua"

MODES = [
    "bare",
    "floor",
    "naive",
    "cachalot",
    "simplejwt",
    "simplejwt-tuned",
    "knox",
    "seed-ttl",
    "ours-local",
    "ours-redis",
    "ours-redis-direct",
]
# What the quick variant leaves out: lines that answer a side question (how much the near cache
# buys, how far hand-tuned SQL or a query cache carry a peer), not a target.
FULL_ONLY = {"cachalot", "simplejwt-tuned", "ours-redis-direct"}
# The reference line: every ratio of the report is taken against it.
REFERENCE = "bare"
# A second server of the reference, paired with the first (steps.paired_rounds): the side-by-side
# method's own error.
CONTROL = f"{REFERENCE}-control"
TOKEN_KIND = {
    "bare": "ours",
    "floor": "ours",
    "naive": "naive",
    "cachalot": "naive",
    "simplejwt": "simplejwt",
    "simplejwt-tuned": "simplejwt",
    "knox": "knox",
    "seed-ttl": "simplejwt",
    "ours-local": "ours",
    "ours-redis": "ours",
    "ours-redis-direct": "ours",
}
USES_REDIS = {"cachalot", "ours-redis", "ours-redis-direct"}
CACHED = {"cachalot", "seed-ttl", "ours-local", "ours-redis", "ours-redis-direct"}
# Caches held in each worker's memory: every worker is warmed, not one for all.
PER_PROCESS_CACHE = {"seed-ttl", "ours-local"}
# The WSGI module each mode's gunicorn serves (the bare project is a project of its own).
WSGI_MODULE = {"bare": "bench.bare.wsgi"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def token_file(run_dir: Path, mode: str) -> Path:
    """The seed's file of ``Authorization`` values a mode's requests rotate through, one a line."""
    return run_dir / f"tokens-{TOKEN_KIND[mode]}.txt"


def tokens_of(run_dir: Path, mode: str) -> tuple[Path, list[str]]:
    path = token_file(run_dir, mode)
    return path, [t for t in path.read_text().split("\n") if t]


@dataclass
class Config:
    quick: bool
    workers: int
    duration: int
    warmup: int
    phase_warmup: int
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


def parse_args(argv: list[str] | None = None, description: str | None = None) -> Config:
    """``description`` heads ``--help`` (``python -m bench.run`` passes its own docstring)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter phases (about 2 minutes)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers per mode (default 4)")
    parser.add_argument("--duration", type=int, help="seconds per load phase (default 6, quick 3)")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved phases (default 3, quick 3)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per mode (default 5, quick 1)")
    parser.add_argument(
        "--phase-warmup", type=int, default=1, help="uncounted seconds of load before each measured phase (default 1)"
    )
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
        phase_warmup=args.phase_warmup,
        concurrency=args.concurrency or ([32, 100] if quick else [8, 32, 100]),
        users=args.users,
        token_users=args.token_users or (100 if quick else 200),
        cold_levels=args.cold_levels or ([1000, 100_000] if quick else [1000, 100_000, 1_000_000]),
        cold_samples=args.cold_samples or (30 if quick else 150),
        counted_seconds=2 if quick else 4,
        body_users=20 if quick else 100,
        login_samples=30 if quick else 60,
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
        rounds=args.rounds or 3,
        gunicorn_args=list(args.gunicorn_arg),
        log_statements=args.log_statements,
    )
