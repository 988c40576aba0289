"""gunicorn: one server per mode, its environment, and plain HTTP requests to it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.config import ROOT, USES_REDIS, WSGI_MODULE, Config, log, token_file

SECRET_KEY = "bench-secret-key-not-for-production-0123456789abcdefghijklmnop"


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
                WSGI_MODULE.get(self.mode, "project.wsgi"),
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

    def pin(self, cpus: set[int] | None) -> None:
        """Run every thread of this server's processes on ``cpus`` only (None: wherever the bench
        itself may run). Threads started later inherit the setting of the thread that starts them."""
        target = cpus or os.sched_getaffinity(0)
        for pid in [*([self.proc.pid] if self.proc else []), *self.worker_pids()]:
            try:
                tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in tids:
                with contextlib.suppress(OSError):  # (a thread that ended meanwhile)
                    os.sched_setaffinity(tid, target)

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
            # Production settings over plain HTTP on loopback: no TLS redirect or secure cookies.
            "SECURE_COOKIES": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": db_url,
            "DJANGO_SETTINGS_MODULE": "bench.settings_peers",
            "CACHE_KEY_PREFIX": cfg.key_prefix,
            "PYTHONDONTWRITEBYTECODE": "1",
            # The seed's access tokens must outlive a run (and the in-process tools run after it).
            "ACCESS_TOKEN_TTL": "86400",
            # One pooled connection per sync worker (it serves one request at a time): eleven
            # modes of 4 workers, each with its carrier's LISTEN connection, stay under
            # PostgreSQL's default 100 connections.
            "DB_MAX_CONNECTIONS": "1",
        }
    )
    return env


def mode_env(cfg: Config, base: dict[str, str], mode: str, run_dir: Path) -> dict[str, str]:
    env = dict(
        base,
        BENCH_MODE=mode,
        BENCH_FLOOR_PAYLOAD=str(run_dir / "floor.json"),
        BENCH_TOKENS_FILE=str(token_file(run_dir, mode)),
    )
    if mode in WSGI_MODULE:  # a project of its own
        env["DJANGO_SETTINGS_MODULE"] = "bench.bare.settings"
    if mode in USES_REDIS:
        env["REDIS_URL"] = f"redis://{cfg.redis_host}:{cfg.redis_port}/{cfg.redis_db}"
    if mode == "cachalot":
        env["CACHE_KEY_PREFIX"] = f"{cfg.key_prefix}_cachalot"
    if mode == "ours-redis-direct":  # the project with its near cache off: one EVALSHA per request
        env["CACHE_NEAR_MAX_ENTRIES"] = "0"
    return env
