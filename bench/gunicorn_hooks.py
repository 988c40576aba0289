"""gunicorn configuration of the benchmark (``-c python:bench.gunicorn_hooks``).

Counts, in each worker, the requests gunicorn handed to Django by path, so the benchmark divides
server-side counts (SQL statements, Redis commands) by the requests the server really served,
including those wrk gave up on when a phase ended. ``/bench/pgflush`` reports them.
The default ``pre_request`` hook logs at debug level; this one only counts.
"""

from typing import Any

REQUESTS: dict[str, int] = {}


def pre_request(worker: Any, req: Any) -> None:
    path = req.path
    REQUESTS[path] = REQUESTS.get(path, 0) + 1
