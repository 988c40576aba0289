"""A run's steps: seed, start and warm each mode, interleaved load rounds, then each mode's last measurements."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from psycopg import sql

from bench.benchrun import BenchRun
from bench.config import CACHED, CONTROL, PER_PROCESS_CACHE, REFERENCE, ROOT, USES_REDIS, Config, log, tokens_of
from bench.measurements import Meter, exact_counts, load_phase, paired_phase, percentile, run_wrk, sequential
from bench.postgres import Postgres
from bench.redis_probe import RedisProbe
from bench.server import Server, http_request


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
        if mode in PER_PROCESS_CACHE:
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


def run_rounds(run: BenchRun) -> None:
    """Load phases: one mode at a time, the modes interleaved (order rotated each round), so a change
    in the machine's background load touches every mode alike instead of whichever ran then."""
    cfg, servers = run.cfg, run.servers
    modes = list(servers)
    # The reference and the modes held to a ratio of it run back to back (seconds apart, not a
    # minute): this machine's speed moves within a minute, and a ratio is only as good as the
    # two phases it divides being measured in the same conditions.
    block = [m for m in modes if m in TARGET_BLOCK]
    rest = [m for m in modes if m not in TARGET_BLOCK]
    for round_index in range(cfg.rounds):
        order = _rotated(block, round_index) + _rotated(rest, round_index)
        for connections in cfg.concurrency:
            for mode in order:
                server = servers[mode]
                tokens_path, _ = tokens_of(run.run_dir, mode)
                phase = load_phase(cfg, Meter(run.pg, run.probe, server), connections, tokens_path, cfg.duration)
                phase["round"] = round_index + 1
                run.modes[mode]["rounds"].append(phase)
                log(
                    f"round {round_index + 1} {mode} c={connections}: {phase['rps']:.0f} req/s "
                    f"p50 {phase['p50_ms']} ms p99 {phase['p99_ms']} ms sql/req {phase['sql_per_req']:.4f} "
                    f"redis/req {phase['redis_per_req']:.3f} errors {phase['errors_total']}"
                )
    for mode in modes:
        data = run.modes[mode]
        data["phases"] = [combine([p for p in data["rounds"] if p["connections"] == c]) for c in cfg.concurrency]


TARGET_BLOCK = (REFERENCE, "ours-local", "ours-redis")


def paired_rounds(run: BenchRun) -> None:
    """The targets' ratios, side by side: the reference and one mode under load at the same time,
    both servers pinned to the first CPU and both wrk processes to the others, so the two share the
    same seconds of this machine (whose speed drifts between phases) and the same core; the
    reference is also paired with a second server of its own (the control). Needs 2 CPUs."""
    cfg = run.cfg
    cpus = sorted(os.sched_getaffinity(0))
    modes = [m for m in TARGET_BLOCK[1:] if m in run.servers]
    if len(cpus) < 2 or REFERENCE not in run.servers or not modes or not shutil.which("taskset"):
        log("paired phases skipped (they need 2 CPUs, taskset, the reference and a mode held to it)")
        return
    server_cpus, wrk_cpus = {cpus[0]}, set(cpus[1:])
    reference = run.servers[REFERENCE]
    control = Server(cfg, REFERENCE, reference.env, run.run_dir, cfg.port + len(cfg.modes))
    control.log_path = run.run_dir / f"gunicorn-{CONTROL}.log"
    pairs = {CONTROL: control, **{m: run.servers[m] for m in modes}}
    out: dict[str, Any] = {
        "server_cpus": sorted(server_cpus),
        "wrk_cpus": sorted(wrk_cpus),
        "pairs": {name: [] for name in pairs},
    }
    try:
        prepare_mode(cfg, control, run.run_dir)
        for round_index in range(cfg.rounds):
            for connections in cfg.concurrency:
                for name in _rotated(list(pairs), round_index):
                    server = pairs[name]
                    targets = [(s.port, tokens_of(run.run_dir, s.mode)[0]) for s in (reference, server)]
                    for s in (reference, server):
                        s.pin(server_cpus)
                    try:
                        ref, mine = paired_phase(cfg, targets, connections, cfg.duration, wrk_cpus)
                    finally:
                        for s in (reference, server):
                            s.pin(None)
                    out["pairs"][name].append(
                        {"round": round_index + 1, "connections": connections, "reference": ref, "mode": mine}
                    )
                    log(
                        f"paired round {round_index + 1} c={connections} {name}: {mine['rps']:.0f} req/s against "
                        f"{ref['rps']:.0f} ({mine['rps'] / max(ref['rps'], 1e-9):.3f}), p99 {mine['p99_ms']} ms "
                        f"against {ref['p99_ms']} ms"
                    )
    finally:
        control.stop()
    run.paired = out


def _rotated(modes: list[str], by: int) -> list[str]:
    if not modes:
        return modes
    by %= len(modes)
    return modes[by:] + modes[:by]


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


def finish_mode(run: BenchRun, server: Server) -> None:
    """Exact Redis counts under load, response bodies, login and cold requests, cache entry sizes."""
    cfg, mode = run.cfg, server.mode
    out = run.modes[mode]
    tokens_path, tokens = tokens_of(run.run_dir, mode)
    meter = Meter(run.pg, run.probe, server)

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
    run.bodies[mode] = bodies_pass.pop("bodies")
    out["body_bytes"] = round(statistics.fmean(len(b) for b in run.bodies[mode]), 1)
    out["sequential"] = bodies_pass
    if mode in ("naive", "ours-redis"):
        out["login"] = login_pass(run, meter)
        both = out["login"]
        log(
            f"{mode} login: p50 {both['p50_ms']} ms p99 {both['p99_ms']} ms; {both['concurrent']['concurrency']} at "
            f"once: p50 {both['concurrent']['p50_ms']} ms p99 {both['concurrent']['p99_ms']} ms"
        )
    if mode == "ours-redis":
        out["refresh"] = refresh_pass(run, meter)
        log(
            f"{mode} refresh: p50 {out['refresh']['p50_ms']} ms p99 {out['refresh']['p99_ms']} ms "
            f"(sql/refresh {out['refresh']['sql_per_req']:.2f})"
        )
    if mode == "ours-redis":
        run.memory = run.probe.memory(cfg.key_prefix, run.meta["token_users"])
        run.cold = cold_passes(run, meter)


def login_pass(run: BenchRun, meter: Meter) -> dict[str, Any]:
    """Logins one at a time (unloaded), then as many users logging in at once as the seed made
    login users for (each of them ``login_samples`` times): latency, SQL and Redis per login."""
    login = run.meta["login"]
    headers = {"Content-Type": "application/json"}

    def request(username: str) -> tuple[str, str, dict[str, str], bytes]:
        body = json.dumps({"username": username, "password": login["password"]}).encode()
        return ("POST", "/api/auth/login", headers, body)

    requests = [request(login["username"]) for _ in range(run.cfg.login_samples)]
    out = exact_counts(run.cfg, meter, lambda: sequential(meter.server.port, requests))
    usernames = login.get("usernames") or [login["username"]]

    def concurrent() -> dict[str, Any]:
        per_user = max(1, -(-run.cfg.login_samples // len(usernames)))
        passes: list[dict[str, Any]] = [{} for _ in usernames]

        def one(index: int) -> None:
            passes[index] = sequential(meter.server.port, [request(usernames[index])] * per_user, keep_latencies=True)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(usernames))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies = [ms for p in passes for ms in p.get("latencies_ms", [])]
        statuses: dict[str, int] = {}
        for p in passes:
            for status, count in p.get("statuses", {}).items():
                statuses[status] = statuses.get(status, 0) + count
        return {
            "concurrency": len(usernames),
            "requests": len(latencies),
            "statuses": statuses,
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
        }

    out["concurrent"] = exact_counts(run.cfg, meter, concurrent)
    return out


def refresh_pass(run: BenchRun, meter: Meter) -> dict[str, Any]:
    """A chain of refreshes of one session (each answer's refresh token is the next request's):
    latency, SQL statements and Redis round trips per refresh."""
    login = run.meta["login"]
    headers = {"Content-Type": "application/json"}
    body = json.dumps({"username": login["username"], "password": login["password"]}).encode()
    status, data, _ = http_request(meter.server.port, "POST", "/api/auth/login", headers, body)
    if status != 200:
        raise RuntimeError(f"refresh pass: login answered {status}")
    token = json.loads(data)["refresh_token"]
    samples = max(30, run.cfg.login_samples)

    def chain() -> dict[str, Any]:
        nonlocal token
        latencies, statuses = [], {}
        for _ in range(samples):
            payload = json.dumps({"refresh_token": token}).encode()
            status, data, seconds = http_request(meter.server.port, "POST", "/api/auth/refresh", headers, payload)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            latencies.append(seconds * 1000)
            if status != 200:
                break
            token = json.loads(data)["refresh_token"]
        return {
            "requests": len(latencies),
            "statuses": statuses,
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
        }

    out = exact_counts(run.cfg, meter, chain)
    # Without pg_stat_statements the bench counts transactions: a refresh is one transaction of
    # three statements (tests/accounts/test_sessions.py asserts the three).
    out["sql_counted_as"] = "statements" if run.pg.pgss else "transactions"
    return out


def cold_passes(run: BenchRun, meter: Meter) -> dict[str, Any]:
    cfg, meta = run.cfg, run.meta
    out: dict[str, Any] = {}
    port = meter.server.port
    for level in cfg.cold_levels:
        grown = run.pg.grow_users(meta, level) if level > cfg.users else 0.0
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


# The modes whose request path is broken down layer by layer (bench.layers) at the end of a run.
LAYER_MODES = ("bare", "floor", "ours-local", "ours-redis")


def layer_costs(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """CPU µs per request in each middleware and in the view, one process per mode (no network)."""
    out: dict[str, Any] = {}
    requests, batches = (1000, 5) if cfg.quick else (3000, 7)
    for mode in (m for m in LAYER_MODES if m in cfg.modes):
        log(f"{mode}: cost of each layer of the request path, in one process")
        done = subprocess.run(
            [
                *(sys.executable, "-m", "bench.layers", str(run_dir), "--mode", mode, "--json"),
                *("--requests", str(requests), "--batches", str(batches)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench.layers failed for {mode}: {done.stderr[-2000:]}")
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return out
