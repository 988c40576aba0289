"""Measurements: wrk load phases, server-side counters around them, and sequential requests."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import LUA, Config
from bench.postgres import Postgres
from bench.redis_probe import Monitor, RedisProbe
from bench.server import Server, http_request


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the same definition wrk uses)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def run_wrk(
    cfg: Config, port: int, connections: int, duration: int, tokens: Path, cpus: set[int] | None = None
) -> dict[str, Any]:
    """One wrk run; with ``cpus``, wrk runs on those CPUs only (``taskset``)."""
    pinned = ["taskset", "-c", ",".join(str(cpu) for cpu in sorted(cpus))] if cpus else []
    cmd = [
        *pinned,
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
    """One measured phase, after ``cfg.phase_warmup`` seconds of the same load left uncounted: the
    server (its per-process caches, the CPU's caches) is measured in its steady state, not in what
    the other servers' phases left it in."""
    if cfg.phase_warmup > 0:
        run_wrk(cfg, meter.server.port, connections, cfg.phase_warmup, tokens)
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


def exact_counts(cfg: Config, meter: Meter, run: Callable[..., dict[str, Any] | None]) -> dict[str, Any]:
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
    port: int,
    requests: Sequence[tuple[str, str, dict[str, str], bytes | None]],
    keep_bodies: bool = False,
    keep_latencies: bool = False,
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
    if keep_latencies:
        out["latencies_ms"] = latencies
    return out


def paired_phase(
    cfg: Config, targets: list[tuple[int, Path]], connections: int, duration: int, cpus: set[int] | None
) -> list[dict[str, Any]]:
    """wrk against each (port, tokens) at the same time: each gets ``cfg.phase_warmup`` seconds of
    uncounted load, then the measured runs start together. Returns each run's rate and latencies."""
    barrier = threading.Barrier(len(targets))
    results: list[dict[str, Any]] = [{} for _ in targets]

    def one(index: int, port: int, tokens: Path) -> None:
        if cfg.phase_warmup > 0:
            run_wrk(cfg, port, connections, cfg.phase_warmup, tokens, cpus)
        barrier.wait(timeout=120)
        results[index] = run_wrk(cfg, port, connections, duration, tokens, cpus)

    threads = [threading.Thread(target=one, args=(i, port, tokens)) for i, (port, tokens) in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out = []
    for result in results:
        if not result:
            raise RuntimeError("a paired wrk run gave no result")
        errors = sum(int(result[k]) for k in ("non2xx", "err_connect", "err_read", "err_write", "err_timeout"))
        out.append(
            {
                "requests": int(result["requests"]),
                "rps": round(result["requests"] / (result["duration_us"] / 1e6), 1),
                "p50_ms": round(result["p50_us"] / 1000, 2),
                "p99_ms": round(result["p99_us"] / 1000, 2),
                "errors_total": errors,
            }
        )
    return out
