"""Commit -> first fresh answer: writes from outside the servers, read back through every server."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from tests.support.processes import WebProcess

POLL_SECONDS = 0.002


@dataclass
class Reader:
    """One keep-alive connection to a server, asking ``/api/me`` with one user's token."""

    url: str
    token: str

    def __post_init__(self) -> None:
        parsed = urlparse(self.url)
        self._conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)

    def display_name(self) -> str:
        self._conn.request("GET", "/api/me", headers={"Authorization": f"Bearer {self.token}"})
        response = self._conn.getresponse()
        body = response.read()
        assert response.status == 200, body[:300]
        return str(json.loads(body)["user"]["display_name"])


def login(web: WebProcess, username: str, password: str) -> str:
    parsed = urlparse(web.url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    body = json.dumps({"username": username, "password": password})
    conn.request("POST", "/api/auth/login", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    assert response.status == 200, payload[:300]
    return str(json.loads(payload)["access_token"])


def measure(
    readers: Sequence[Reader], write: Callable[[str], None], *, writes: int, timeout: float = 5.0
) -> list[float]:
    """For each write, the seconds from its commit until every reader answers with it.

    ``write(value)`` commits ``value`` as the user's display name outside the servers (raw
    SQL on a connection of its own) and returns once committed.
    """
    latencies: list[float] = []
    for i in range(writes):
        value = f"fresh-{i}-{time.monotonic_ns()}"
        write(value)
        committed = time.perf_counter()
        seen: list[float] = []

        def wait(reader: Reader, value: str = value, committed: float = committed, seen: list[float] = seen) -> None:
            while time.perf_counter() - committed < timeout:
                if reader.display_name() == value:
                    seen.append(time.perf_counter() - committed)
                    return
                time.sleep(POLL_SECONDS)

        threads = [threading.Thread(target=wait, args=(reader,)) for reader in readers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == len(readers), f"write {i} not seen by every server within {timeout}s"
        latencies.append(max(seen))
    return latencies


def summary(latencies: Sequence[float]) -> dict[str, float | int]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "writes": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }
