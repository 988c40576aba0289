"""Microseconds per warm ``GET /api/me`` in one process, through Django's WSGI handler (no network).

``python -m bench.inproc RUN_DIR [--mode ours-redis] [--requests 2000] [--batches 7]``

RUN_DIR is a run directory kept by ``python -m bench.run --keep-logs`` (its tokens and the bench
database it seeded). Measures wall and CPU time per request over batches after a warm pass and
prints the medians. Run from another source tree (a scratch copy with a candidate change) with
``cd SCRATCH && python -m bench.inproc RUN_DIR`` to measure that change alone, free of the
network and of the machine's background load as far as CPU time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--mode", default="ours-redis")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--env", nargs="*", default=[], help="extra NAME=VALUE settings for this process")
    parser.add_argument("--pyinstrument", type=Path, help="also profile one batch, writing pyinstrument's text here")
    args = parser.parse_args()

    from bench.config import WSGI_MODULE, parse_args, tokens_of
    from bench.layers import wsgi_environ
    from bench.postgres import Postgres
    from bench.server import base_env, mode_env

    cfg = parse_args(["--quick"])
    pg = Postgres(cfg.pg_admin_url, cfg.db_name)
    env = mode_env(cfg, base_env(cfg, pg.db_url()), args.mode, args.run_dir)
    env.update(dict(item.split("=", 1) for item in args.env))
    os.environ.clear()
    os.environ.update(env)
    _, tokens = tokens_of(args.run_dir, args.mode)

    if args.mode in WSGI_MODULE:  # a project of its own
        from django.core.wsgi import get_wsgi_application

        app = get_wsgi_application()
    else:  # the application gunicorn serves
        from project.wsgi import application as app
    statuses: dict[str, int] = {}

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses[status[:3]] = statuses.get(status[:3], 0) + 1
        return lambda data: None

    def call(token: str) -> None:
        environ = wsgi_environ(token)
        response = app(environ, start_response)
        b"".join(response)
        response.close()

    # The per-request log lines go nowhere (the handlers hold the original stderr: redirect the fd).
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    for token in tokens:  # warm: every context cached
        call(token)
    walls, cpus = [], []
    for _ in range(args.batches):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.requests):
            call(tokens[i % len(tokens)])
        walls.append((time.perf_counter() - wall) / args.requests * 1e6)
        cpus.append((time.process_time() - cpu) / args.requests * 1e6)
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001)
        profiler.start()
        for i in range(args.requests):
            call(tokens[i % len(tokens)])
        profiler.stop()
        args.pyinstrument.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    os.dup2(saved, 2)
    print(
        f"{args.mode}: wall {statistics.median(walls):.1f} us/request (min {min(walls):.1f}), "
        f"CPU {statistics.median(cpus):.1f} us/request (min {min(cpus):.1f}); statuses {statuses}"
    )


if __name__ == "__main__":
    main()
