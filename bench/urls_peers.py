"""Benchmark-only URLs: ``/api/me`` is served by the mode's design; ``/bench/pgflush`` by every mode."""

from django.conf import settings
from django.urls import path

from bench import peers

MODE = settings.BENCH_MODE
_bench = [
    path("bench/pgflush", peers.pgflush, name="bench-pgflush"),
    path("bench/warm", peers.warm, name="bench-warm"),
]

if MODE in ("ours-local", "ours-redis", "ours-redis-direct"):
    # The project exactly as shipped (same resolution order), plus the measurement helper.
    from project import urls as _product

    urlpatterns = [*_product.urlpatterns, *_bench]
    handler400 = getattr(_product, "handler400", "django.views.defaults.bad_request")
    handler403 = getattr(_product, "handler403", "django.views.defaults.permission_denied")
    handler404 = getattr(_product, "handler404", "django.views.defaults.page_not_found")
    handler500 = getattr(_product, "handler500", "django.views.defaults.server_error")
elif MODE == "floor":
    urlpatterns = [path("api/me", peers.FloorApi.as_view(), name="me"), *_bench]
elif MODE in ("naive", "cachalot"):
    urlpatterns = [
        path("api/me", peers.NaiveMeApi.as_view(), name="me"),
        path("api/auth/login", peers.NaiveLoginApi.as_view(), name="auth-login"),
        *_bench,
    ]
elif MODE == "simplejwt":
    urlpatterns = [
        path("api/me", peers.TypicalMeApi.as_view(authenticator=peers._simplejwt_authentication()), name="me"),
        *_bench,
    ]
elif MODE == "knox":
    urlpatterns = [
        path("api/me", peers.TypicalMeApi.as_view(authenticator=peers._knox_authentication()), name="me"),
        *_bench,
    ]
elif MODE == "simplejwt-tuned":
    urlpatterns = [path("api/me", peers.JwtMeApi.as_view(), name="me"), *_bench]
elif MODE == "seed-ttl":
    urlpatterns = [path("api/me", peers.SeedTtlMeApi.as_view(), name="me"), *_bench]
else:  # pragma: no cover - settings_peers refuses unknown modes
    urlpatterns = _bench
