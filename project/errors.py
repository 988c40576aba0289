"""JSON error pages for API paths (HTML ones stay for the admin)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger("project.errors")

_API_PREFIXES = ("/api/", "/health", "/metrics")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(_API_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception | None = None, **_: Any) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Bad request.", "code": "invalid"}, status=400)
    return defaults.bad_request(request, exception)  # type: ignore[arg-type]


def permission_denied(request: HttpRequest, exception: Exception | None = None, **_: Any) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": "You do not have permission to perform this action.", "code": "permission_denied"}, status=403
        )
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def page_not_found(request: HttpRequest, exception: Exception | None = None, **_: Any) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest, **_: Any) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: a database that cannot be reached (dropped connection, exhausted
    pool, failover) is a 503 the client may retry, never a 500."""
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable", extra={"error": type(exc).__name__})
        _pool_drain_after(exc)
        return Response(
            {"detail": "Service temporarily unavailable.", "code": "unavailable"},
            status=503,
            headers={"Retry-After": "1"},
        )
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        _add_code(exc, response)
        if response.status_code == 401 and response.data.get("code") in _TOKEN_CODES:
            _bearer_challenge(context.get("request"), response)
    return response


# Refusals of a presented access token (a refresh token's are not bearer challenges).
_TOKEN_CODES = frozenset({"token_invalid", "token_expired", "token_revoked"})
# DRF's own codes where the contract names them otherwise.
_CODES = {"authentication_failed": "token_invalid", "parse_error": "invalid"}


def _add_code(exc: APIException, response: Response) -> None:
    """``{"detail", "code"}``: a stable code next to DRF's message (field errors keep their lists)."""
    data = response.data
    if not (isinstance(data, dict) and isinstance(data.get("detail"), str)):
        return
    codes = exc.get_codes()
    if isinstance(codes, str):
        data["code"] = _CODES.get(codes, codes)


def _bearer_challenge(request: Any, response: Response) -> None:
    """RFC 6750: a refused bearer token is answered with ``error="invalid_token"`` and why."""
    header = getattr(request, "META", {}).get("HTTP_AUTHORIZATION", "") if request is not None else ""
    if not header.lower().startswith("bearer ") or "WWW-Authenticate" not in response:
        return
    description = str(response.data.get("detail", "")) if isinstance(response.data, dict) else ""
    description = description.replace("\\", "").replace('"', "'")
    response["WWW-Authenticate"] = f'Bearer realm="api", error="invalid_token", error_description="{description}"'


def _pool_drain_after(exc: Exception) -> None:
    """A dropped connection (server restart, failover, terminated backend) means its idle
    siblings in the pool are most likely dead too: replace them all now, so this request is
    the process's only casualty instead of one per pooled connection. Other errors (an
    exhausted pool, a deadlock, no server at all) leave the pool alone."""
    held = connection.connection
    if not (getattr(held, "broken", False) or getattr(held, "closed", False)):
        return
    pool = getattr(connection, "pool", None)
    if pool is None:
        return
    try:
        pool.drain()
    except Exception:  # best effort: the pool discards bad connections on return anyway
        logger.debug("connection pool not drained", exc_info=True)
