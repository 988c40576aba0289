"""In-process latency of warm and cold ``GET /api/me`` through Django's WSGI handler.

Usage (PostgreSQL + Redis, or leave both unset for SQLite + in-process cache):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/authctx_measure REDIS_URL=redis://127.0.0.1:6379/12 \
        SECRET_KEY=measure .venv/bin/python scripts/measure_me.py [--iterations 2000]
It migrates the database it is given, seeds a few users and prints medians and p99s.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    from accounts.demo import demo_seed
    from accounts.models import User
    from accounts.sessions import session_start
    from cachemgmt import cache

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    call_command("migrate", verbosity=0)
    demo_seed(users=10, password="measure-pass-1")  # noqa: S106 - throwaway measurement data
    user = User.objects.get(username="user2")
    token = session_start(user_id=user.pk, token_version=user.token_version, device="measure", ip=None).access_token
    app = get_wsgi_application()

    def request() -> int:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/api/me",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        status: list[str] = []

        def start_response(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return lambda data: None

        body = b"".join(app(environ, start_response))
        assert status[0].startswith("200"), (status, body[:200])
        return len(body)

    def timed(before: object = None, n: int = args.iterations) -> list[float]:
        samples = []
        for _ in range(n):
            if before is not None:
                before()  # type: ignore[operator]
            start = time.perf_counter()
            request()
            samples.append((time.perf_counter() - start) * 1e6)
        return samples

    def clear() -> None:
        cache.namespace_clear("user_context")

    for _ in range(200):
        request()  # warm up imports, pools, prepared plans
    statements: list[str] = []

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append(sql)
        return execute(sql, params, many, context)

    # Django resets connection.queries at each request start, so count with a wrapper.
    with connection.execute_wrapper(count):
        request()
        warm_statements = len(statements)
        clear()
        request()
        cold_statements = len(statements) - warm_statements
    warm = timed()
    cold = timed(before=clear, n=max(200, args.iterations // 4))

    def fmt(samples: list[float]) -> str:
        samples = sorted(samples)
        p99 = samples[int(len(samples) * 0.99) - 1]
        return f"median {statistics.median(samples):7.0f} us   p99 {p99:7.0f} us   (n={len(samples)})"

    print(f"database={connection.vendor} cache={cache.backend_name()}")
    print(f"warm GET /api/me: {fmt(warm)}   SQL statements: {warm_statements}")
    print(f"cold GET /api/me: {fmt(cold)}   SQL statements: {cold_statements}")


if __name__ == "__main__":
    main()
