"""What each piece of a warm ``GET /api/me`` costs, timed alone in one process (µs per call).

``python -m bench.components RUN_DIR [--number 20000] [--repeat 7]``

RUN_DIR is a run directory kept by ``python -m bench.run --keep-logs`` (its tokens and the bench
database). Each line is the best of ``--repeat`` timeit runs: the machine's speed drifts, and the
minimum is the figure least touched by it. Pairs show a piece of the request path next to what it
replaced or avoids (the near cache against the EVALSHA it saves, the decode cache against a parse,
and so on), so the gain of each change can be read off one run.
"""

from __future__ import annotations

import argparse
import os
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any


def best_us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from bench.config import parse_args, tokens_of
    from bench.postgres import Postgres
    from bench.server import base_env, mode_env

    cfg = parse_args(["--quick"])
    pg = Postgres(cfg.pg_admin_url, cfg.db_name)
    os.environ.clear()
    os.environ.update(mode_env(cfg, base_env(cfg, pg.db_url()), "ours-redis", args.run_dir))
    _, tokens = tokens_of(args.run_dir, "ours-redis")

    import django

    django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory
    from rest_framework.renderers import JSONRenderer

    from accounts.context import UserContext, context_from_payload
    from accounts.selectors import NAMESPACE, context_entry_ident, user_context_get
    from accounts.tokens import token_decode
    from cachemgmt import cache
    from project.middleware import BrowserAuthenticationMiddleware, BrowserMessageMiddleware, BrowserSessionMiddleware

    token = tokens[0].split(" ", 1)[1]
    claims = token_decode(token)
    user_id = claims.user_id
    user_context_get(user_id=user_id)  # filled
    store = cache.get_store()
    assert isinstance(store, cache.RedisStore) and store.near is not None
    key = cache.entry_key(NAMESPACE, context_entry_ident(user_id))
    deadline = time.monotonic() + 5
    while not getattr(store.get(key, lock_key=None), "near", False):  # the lease and the copy
        assert time.monotonic() < deadline, "the near cache never served the entry"
        time.sleep(0.005)
    hit = store.get(key, lock_key=None)
    assert isinstance(hit, cache.Hit)
    payload = hit.payload
    direct = cache.RedisStore()
    direct.near = None
    near = store.near
    context = context_from_payload(payload)
    renderer = JSONRenderer()

    factory = RequestFactory()

    def view(request: Any) -> HttpResponse:
        return HttpResponse()

    chain = BrowserSessionMiddleware(BrowserAuthenticationMiddleware(BrowserMessageMiddleware(view)))
    bearer_call = factory.get("/api/me", HTTP_AUTHORIZATION=tokens[0])
    browser_call = factory.get("/admin/")

    def full_pending_check() -> bool:  # what every request ran before the thread-local pre-check
        from django.db import connection

        callbacks = connection.run_on_commit if connection.in_atomic_block else ()
        return any(isinstance(entry[1], cache.PendingInvalidation) for entry in callbacks)

    n, r = args.number, args.repeat
    rows = [
        ("context lookup, near cache (Redis mode): NearCache.lookup", best_us(lambda: near.lookup(key), n, r)),
        ("  its socket check: poll(2)", best_us(lambda: near._poller.poll(0), n, r)),
        ("  the check it replaced: redis-py can_read", best_us(lambda: near.connection.can_read(0), n, r)),
        ("context lookup, one EVALSHA (near cache off)", best_us(lambda: direct.get(key, lock_key=None), n // 20, r)),
        (
            "cache.entry_get, near hit (keys, counters)",
            best_us(lambda: cache.entry_get(NAMESPACE, context_entry_ident(user_id)), n, r),
        ),
        ("decode, per-process cache: context_from_payload", best_us(lambda: context_from_payload(payload), n, r)),
        ("decode, a JSON parse: UserContext.from_payload", best_us(lambda: UserContext.from_payload(payload), n, r)),
        ("user_context_get, warm (all of the above)", best_us(lambda: user_context_get(user_id=user_id), n, r)),
        ("pending-invalidation check, thread-local pre-check", best_us(cache.invalidations_pending, n, r)),
        ("pending-invalidation check, connection's list", best_us(full_pending_check, n, r)),
        ("bearer token, verified before: token_decode", best_us(lambda: token_decode(token), n, r)),
        ("a bare view (the reference for the next two lines)", best_us(lambda: view(bearer_call), n, r)),
        ("session + auth + messages middleware, bearer API call", best_us(lambda: chain(bearer_call), n, r)),
        ("session + auth + messages middleware, browser call", best_us(lambda: chain(browser_call), n, r)),
        ("DRF JSON render of the context", best_us(lambda: renderer.render(context.public), n, r)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:9.2f} us")


if __name__ == "__main__":
    main()
