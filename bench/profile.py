"""Where a warm ``GET /api/me`` spends its time: py-spy on real gunicorn workers under wrk load.

``python -m bench.profile [--modes ours-redis ours-local] [--seconds 10] [--connections 32]``

Seeds the bench database like ``bench.run --quick``, starts each mode's gunicorn (sync workers),
warms it, drives it with wrk and samples every worker with ``py-spy record --idle`` (blocking
sampling: exact stacks). Each sample is put in the first category that matches its stack read
from the leaf up (so "Redis" holds the socket wait and redis-py, "JWT" the decoding, and so on);
samples of a worker waiting for a connection are idle and left out. Prints, per mode, the share
of busy samples and the microseconds per request of each category, and writes the same as JSON
next to the raw stacks (``bench/results/profile.json``, ``profile-<mode>.txt.gz``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.config import LUA, MODES, RESULTS, parse_args, tokens_of
from bench.postgres import Postgres
from bench.redis_probe import RedisProbe
from bench.server import Server, base_env, mode_env
from bench.steps import prepare_mode, setup_database

# A sample whose innermost frame is one of these is a thread waiting (a worker's main thread for
# its next connection, or the pool, scheduler and counter threads): idle, left out.
IDLE_LEAVES = (
    "SyncWorker.wait (",
    "Condition.wait (",
    "Event.wait (",
    "Queue.get (",
    ".select (selectors.py",
    "Arbiter.wait_for_signals (",
    "ControlSocketServer._run_loop (",
    "sleep (",
)

# (category, substrings of a frame): the first category matching a frame, leaf first, wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("context lookup: Redis round trip and redis-py", ("redis/", "hiredis")),
    ("context lookup: in-process store", ("LocalStore.",)),
    ("context lookup: cache.py, selectors (Python)", ("cachemgmt/cache/", "accounts/selectors.py")),
    ("context: decode the cached payload", ("accounts/context.py",)),
    ("auth: bearer token decode (PyJWT)", ("jwt/", "accounts/tokens.py")),
    ("auth: ContextTokenAuthentication, ContextUser", ("accounts/authentication.py",)),
    ("log line per request (logging, structlog)", ("logging/", "structlog/", "project/logging.py")),
    ("metrics: latency histogram", ("prometheus_client/", "cachemgmt/metrics.py")),
    ("request id, body limit, counters middleware", ("project/", "cachemgmt/counters.py")),
    ("DRF: render JSON", ("rest_framework/renderers.py", "rest_framework/utils/encoders.py", "json/")),
    ("DRF: dispatch, negotiation, permissions, Request", ("rest_framework/",)),
    ("Django: handler, URL resolver, middleware, response", ("django/",)),
    ("gunicorn: lingering close (waits for the client's FIN)", ("close_graceful (",)),
    ("gunicorn: accept, parse, write", ("gunicorn/", "socket.py")),
]


def categorize(stack: list[str]) -> str:
    if stack and stack[-1].startswith(IDLE_LEAVES):
        return "idle"
    for frame in reversed(stack):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def shorten(raw: Path) -> Path:
    """Gzip py-spy's raw stacks, keeping only the pid of each process frame (it repeats the command line)."""
    lines = raw.read_text(errors="replace").splitlines()
    text = "\n".join(re.sub(r'(process \d+):"[^"]*"', r"\1", line) for line in lines) + "\n"
    packed = raw.with_name(raw.name + ".gz")
    packed.write_bytes(gzip.compress(text.encode()))
    raw.unlink()
    return packed


def _stacks(path: Path) -> list[str]:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode(errors="replace").splitlines()


def analyse(raw: Path, requests: float, rate: int) -> dict[str, Any]:
    samples: dict[str, int] = {}
    for line in _stacks(raw):
        stack_text, _, count = line.rpartition(" ")
        frames = stack_text.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        if len(processes) < 2:  # the master (arbiter) process: not serving requests
            continue
        stack = [f for f in frames if not f.startswith(("process ", "thread "))]
        category = categorize(stack)
        samples[category] = samples.get(category, 0) + int(count)
    busy = {k: v for k, v in samples.items() if not k.startswith("idle")}
    total_busy = sum(busy.values()) or 1
    rows = []
    for name, count in sorted(busy.items(), key=lambda item: -item[1]):
        rows.append(
            {
                "category": name,
                "share": round(count / total_busy, 4),
                "us_per_request": round(count / rate / max(requests, 1) * 1e6, 1),
            }
        )
    return {
        "requests": round(requests),
        "busy_us_per_request": round(total_busy / rate / max(requests, 1) * 1e6, 1),
        "idle_samples": sum(v for k, v in samples.items() if k.startswith("idle")),
        "rows": rows,
    }


def reanalyse(rate: int) -> None:
    """Re-categorize the stored raw stacks (after a change to the categories)."""
    path = RESULTS / "profile.json"
    report = json.loads(path.read_text())
    for mode, data in report.items():
        fresh = analyse(RESULTS / f"profile-{mode}.txt.gz", data["requests"], rate)
        report[mode] = {**data, **fresh}
        print_mode(mode, report[mode])
    path.write_text(json.dumps(report, indent=1) + "\n")


def print_mode(mode: str, data: dict[str, Any]) -> None:
    print(
        f"\n{mode}: {data['busy_us_per_request']} us of worker time per request "
        f"({data.get('rps_under_profiler')} req/s under py-spy)"
    )
    for row in data["rows"]:
        print(f"  {row['share'] * 100:5.1f}%  {row['us_per_request']:8.1f} us  {row['category']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["ours-redis", "ours-local"], choices=MODES)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second per worker")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reanalyse", action="store_true", help="only re-categorize the stored stacks")
    args = parser.parse_args()
    if args.reanalyse:
        reanalyse(args.rate)
        return
    spy_binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy_binary).exists():
        raise SystemExit("py-spy is not installed: pip install -r requirements-bench.txt")
    cfg = parse_args(["--quick", "--workers", str(args.workers), "--cold-levels", "1000"])
    run_dir = Path(tempfile.mkdtemp(prefix="authctx-profile-"))
    pg, probe = Postgres(cfg.pg_admin_url, cfg.db_name), RedisProbe(cfg)
    env = base_env(cfg, pg.db_url())
    setup_database(cfg, pg, probe, env, run_dir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    for index, mode in enumerate(args.modes):
        server = Server(cfg, mode, mode_env(cfg, env, mode, run_dir), run_dir, cfg.port + 20 + index)
        try:
            prepare_mode(cfg, server, run_dir)
            assert server.proc is not None
            tokens, _ = tokens_of(run_dir, mode)
            duration = args.seconds + 4
            wrk = subprocess.Popen(
                [
                    "wrk",
                    "-t2",
                    f"-c{args.connections}",
                    f"-d{duration}s",
                    "--latency",
                    "-s",
                    str(LUA),
                    f"http://127.0.0.1:{server.port}/api/me",
                    "--",
                    str(tokens),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(2)
            raw = RESULTS / f"profile-{mode}.txt"
            spy = [spy_binary, "record", "-p", str(server.proc.pid), "--subprocesses", "--idle", "-r", str(args.rate)]
            subprocess.run(
                [*spy, "-d", str(args.seconds), "-f", "raw", "-o", str(raw)],
                check=True,
                capture_output=True,
            )
            raw = shorten(raw)
            out, _ = wrk.communicate()
            line = next(x for x in out.splitlines() if x.startswith("BENCHJSON "))
            result = json.loads(line.removeprefix("BENCHJSON "))
            rps = result["requests"] / (result["duration_us"] / 1e6)
            report[mode] = analyse(raw, rps * args.seconds, args.rate)
            report[mode]["rps_under_profiler"] = round(rps, 1)
        finally:
            server.stop()
        print_mode(mode, report[mode])
    (RESULTS / "profile.json").write_text(json.dumps(report, indent=1) + "\n")
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
