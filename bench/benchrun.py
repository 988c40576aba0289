"""The run object: one run's connections and figures, and the JSON they make (``BenchRun``)."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.config import ROOT, Config
from bench.postgres import Postgres
from bench.redis_probe import RedisProbe
from bench.server import Server, base_env


@dataclass
class BenchRun:
    """One run: what it measures with, and what it has measured so far, mode by mode.

    ``results()`` is the JSON written to ``bench/results/<stamp>.json``; bench/report.py and the
    committed result files read its keys, so they stay as they are.
    """

    cfg: Config
    pg: Postgres
    probe: RedisProbe
    run_dir: Path  # the seed's files (tokens, meta.json) and the servers' logs
    env: dict[str, str]  # every server's environment before its mode's own settings
    stamp: str
    started: float  # perf_counter: setup_s and total_s count from the very start, connections included
    header: dict[str, Any]  # what the run ran on and with, taken before anything runs
    meta: dict[str, Any] = field(default_factory=dict)  # the seed's meta.json
    setup_s: float = 0.0
    servers: dict[str, Server] = field(default_factory=dict)
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    bodies: dict[str, list[bytes]] = field(default_factory=dict)
    memory: dict[str, Any] | None = None  # measured on ours-redis only, like cold
    cold: dict[str, Any] | None = None
    layers: dict[str, Any] = field(default_factory=dict)  # bench.layers, by mode
    paired: dict[str, Any] | None = None  # steps.paired_rounds: the targets' side-by-side phases
    total_s: float = 0.0

    @classmethod
    def start(cls, cfg: Config) -> BenchRun:
        started = time.perf_counter()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        run_dir = Path(tempfile.mkdtemp(prefix=f"authctx-bench-{stamp}-"))
        pg = Postgres(cfg.pg_admin_url, cfg.db_name)
        probe = RedisProbe(cfg)
        header: dict[str, Any] = {
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
                "phase_warmup_s": cfg.phase_warmup,
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
        }
        return cls(cfg, pg, probe, run_dir, base_env(cfg, pg.db_url()), stamp, started, header)

    def results(self) -> dict[str, Any]:
        """The run as written out, keys in the order the results dict used to gather them."""
        out: dict[str, Any] = {
            **self.header,
            "modes": self.modes,
            "context_bytes": self.meta["context_bytes"],
            "setup_s": self.setup_s,
        }
        # A run without ours-redis has neither key (report.py reads them with .get).
        if self.memory is not None:
            out["memory"] = self.memory
        if self.cold is not None:
            out["cold"] = self.cold
        if self.layers:
            out["layers"] = self.layers
        if self.paired is not None:
            out["paired"] = self.paired
        out["total_s"] = self.total_s
        out["bodies_identical"] = compare_bodies(self.bodies, self.meta)
        return out


def compare_bodies(bodies: dict[str, list[bytes]], meta: dict[str, Any]) -> dict[str, Any]:
    """Every authenticated mode must return the same bytes for the same user."""
    reference_mode = next((m for m in ("ours-redis", "ours-local") if m in bodies), None)
    if reference_mode is None:
        return {"checked": False}
    reference = bodies[reference_mode]
    mismatches = {}
    for mode, values in bodies.items():
        if mode in ("bare", "floor"):  # anonymous: a fixed payload
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
        "django-rest-knox",
        "argon2-cffi",
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
