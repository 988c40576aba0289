"""Redis: command counts (server-wide INFO commandstats, exact per-db counts with MONITOR)."""

from __future__ import annotations

import re
import socket
import statistics
import threading
import uuid
from typing import Any

import redis

from bench.config import Config


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
        examples: list[str] = []
        for uid in user_ids:
            # The entry's key ends in its format version (accounts.selectors.context_entry_ident).
            found = [
                k.decode() if isinstance(k, bytes) else k
                for k in self.client.keys(f"{key_prefix}:e:user_context:{uid}.*")
            ]
            if not found:
                continue
            key = found[0]
            examples.append(key)
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
            "key_example": examples[0],
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
