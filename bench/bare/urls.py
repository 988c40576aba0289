"""``GET /api/me``: a fixed body of a median context's size; ``/bench/pgflush``: the request counts."""

from __future__ import annotations

import json
import os
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


def _payload() -> dict[str, Any]:
    source = os.environ.get("BENCH_FLOOR_PAYLOAD", "")
    if not source:
        return {}
    with open(source, encoding="utf-8") as handle:
        return dict(json.load(handle))


PAYLOAD = _payload()


class BareApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(PAYLOAD)


def pgflush(request: HttpRequest) -> JsonResponse:
    """What ``bench.peers.pgflush`` answers, for a project without a database: the requests served."""
    from bench.gunicorn_hooks import REQUESTS

    return JsonResponse({"pid": os.getpid(), "statements": 0, "requests": REQUESTS})


urlpatterns = [path("api/me", BareApi.as_view(), name="me"), path("bench/pgflush", pgflush)]
