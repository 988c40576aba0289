"""Microseconds per warm ``GET /api/me`` spent in each middleware of a mode, in the view, and around them.

``python -m bench.layers RUN_DIR [--mode ours-redis] [--requests 3000] [--batches 7]``

RUN_DIR is a run directory kept by ``python -m bench.run --keep-logs``. The mode's WSGI
application runs in this process with a probe inserted before every middleware and before the
view: a probe's inclusive time minus the next one's is what that layer costs on its own (the
probes' own cost is measured on an empty chain and taken off). "view" is Django's URL resolution,
``process_view`` hooks and the DRF view with its rendering; "handler" is what Django's WSGI
handler does outside the middleware (the request object, signals, the response's headers).
Medians of ``--batches`` batches; CPU time, so the machine's background load touches it little.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Inclusive CPU seconds per probe index, summed over a batch.
_SPENT: list[float] = []
_clock = time.process_time_ns


class _Probe:
    index = 0

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        started = _clock()
        try:
            return self.get_response(request)
        finally:
            _SPENT[self.index] += _clock() - started


def _probe_class(index: int) -> str:
    """A probe class named ``bench.layers.Probe<index>`` (Django builds middleware from dotted paths)."""
    name = f"Probe{index}"
    if name not in globals():
        globals()[name] = type(name, (_Probe,), {"index": index})
    return f"bench.layers.{name}"


def wsgi_environ(token: str) -> dict[str, Any]:
    """A WSGI environ for ``GET /api/me`` with ``token`` as its ``Authorization`` header."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/me",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": token,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def measure(mode: str, run_dir: Path, requests: int, batches: int) -> list[tuple[str, float]]:
    """``(layer, µs per request)`` from outermost to the view, then the whole request."""
    from bench.config import WSGI_MODULE, parse_args, tokens_of
    from bench.postgres import Postgres
    from bench.server import base_env, mode_env

    cfg = parse_args(["--quick"])
    pg = Postgres(cfg.pg_admin_url, cfg.db_name)
    os.environ.clear()
    os.environ.update(mode_env(cfg, base_env(cfg, pg.db_url()), mode, run_dir))
    _, tokens = tokens_of(run_dir, mode)

    import django
    from django.conf import settings

    django.setup()
    names = list(settings.MIDDLEWARE)
    # Probe i runs just before middleware i; probe len(names) just before the view.
    probed: list[str] = []
    for index, name in enumerate(names):
        probed += [_probe_class(index), name]
    probed.append(_probe_class(len(names)))
    settings.MIDDLEWARE = probed
    _SPENT.extend([0.0] * (len(names) + 1))

    if mode in WSGI_MODULE:
        from django.core.wsgi import get_wsgi_application

        app = get_wsgi_application()
    else:
        from project.wsgi import application as app

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        if not status.startswith("200"):
            raise RuntimeError(f"{mode} answered {status}")
        return lambda data: None

    def call(token: str) -> None:
        response = app(wsgi_environ(token), start_response)
        b"".join(response)
        response.close()

    # The per-request log lines go nowhere (the handlers hold the original stderr: redirect the fd).
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        for token in tokens:  # warm: every context cached
            call(token)
        totals: list[float] = []
        per_layer: list[list[float]] = [[] for _ in _SPENT]
        for _ in range(batches):
            for i in range(len(_SPENT)):
                _SPENT[i] = 0.0
            started = _clock()
            for i in range(requests):
                call(tokens[i % len(tokens)])
            totals.append((_clock() - started) / requests / 1000)
            for i, spent in enumerate(_SPENT):
                per_layer[i].append(spent / requests / 1000)
    finally:
        os.dup2(saved, 2)

    overhead = _probe_overhead(requests)
    inclusive = [statistics.median(values) for values in per_layer]
    rows: list[tuple[str, float]] = []
    total = statistics.median(totals)
    # Each probe's inclusive time holds the probes inside it; one probe's own cost per layer is taken off.
    rows.append(("handler (outside the middleware)", total - inclusive[0] - overhead))
    for index, name in enumerate(names):
        rows.append((name, inclusive[index] - inclusive[index + 1] - overhead))
    rows.append(("view (URL resolution, process_view, DRF view and render)", inclusive[-1] - overhead))
    rows.append(("whole request (without the probes)", total - overhead * len(_SPENT)))
    return rows


def _probe_overhead(requests: int) -> float:
    """µs one probe adds around a call that does nothing."""
    probe = _Probe(lambda request: None)
    probe.index = 0
    inner: Callable[[Any], Any] = lambda request: None  # noqa: E731
    runs = []
    for _ in range(7):
        _SPENT[0] = 0.0
        started = _clock()
        for _ in range(requests):
            probe(None)
        with_probe = _clock() - started
        started = _clock()
        for _ in range(requests):
            inner(None)
        runs.append((with_probe - (_clock() - started)) / requests / 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--mode", default="ours-redis")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (the benchmark's report reads it)")
    args = parser.parse_args()
    if not (args.run_dir / "meta.json").is_file():
        parser.error(f"{args.run_dir} is not a kept run directory (no meta.json)")
    if args.requests < 1 or args.batches < 1:
        parser.error("--requests and --batches must be at least 1")
    rows = measure(args.mode, args.run_dir, args.requests, args.batches)
    if args.json:
        print(json.dumps({"mode": args.mode, "requests": args.requests, "batches": args.batches, "rows": rows}))
        return
    width = max(len(name) for name, _ in rows)
    print(f"{args.mode}: CPU µs per request, median of {args.batches} batches of {args.requests}")
    for name, us in rows:
        print(f"  {name:<{width}}  {us:8.1f}")


if __name__ == "__main__":
    # Django imports the probes by their dotted path, ``bench.layers``: run that module's copy.
    from bench.layers import main as _main

    _main()
