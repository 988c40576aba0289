"""Thin API views: cache statistics and clearing (staff via bearer token or admin session), health."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from cachemgmt import cache
from cachemgmt.health import DOWN, health_check
from cachemgmt.selectors import cache_stats_get
from cachemgmt.serializers import (
    CacheClearInputSerializer,
    CacheClearOutputSerializer,
    CacheStatsSerializer,
    DetailSerializer,
    HealthSerializer,
    LiveSerializer,
)
from cachemgmt.services import Actor, ClearRefused, cache_clear


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service temporarily unavailable."
    default_code = "unavailable"


class IsStaff(BasePermission):
    """Staff only; anonymous callers get 401, authenticated non-staff 403."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


STAFF_ERRORS = {
    401: OpenApiResponse(DetailSerializer, description="No valid bearer token or admin session."),
    403: OpenApiResponse(DetailSerializer, description="Authenticated, but not staff (or the CSRF token is missing)."),
}


class StaffApi(APIView):
    """Staff only: a bearer token first (so 401 carries ``WWW-Authenticate: Bearer``), else an admin session."""

    # The project's bearer authentication (the default classes), then the admin session.
    authentication_classes = [*api_settings.DEFAULT_AUTHENTICATION_CLASSES, SessionAuthentication]  # type: ignore[list-item]
    permission_classes = [IsStaff]


class CacheStatsApi(StaffApi):
    @extend_schema(
        operation_id="admin_cache_stats",
        summary="Cache statistics across every process sharing the cache",
        responses={
            200: CacheStatsSerializer,
            **STAFF_ERRORS,
            503: OpenApiResponse(DetailSerializer, description="The shared cache cannot be read."),
        },
    )
    def get(self, request: Request) -> Response:
        try:
            stats = cache_stats_get()
        except cache.CacheUnavailable:
            raise ServiceUnavailable("The shared cache cannot be read.") from None
        return Response(stats)


class CacheClearApi(StaffApi):
    @extend_schema(
        operation_id="admin_cache_clear",
        summary="Clear a cache namespace, every namespace, or one user's context",
        request=CacheClearInputSerializer,
        responses={
            200: CacheClearOutputSerializer,
            400: OpenApiResponse(description="Unknown namespace or user, or a malformed body (field errors)."),
            **STAFF_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = CacheClearInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = cache_clear(
                namespace=serializer.validated_data["namespace"],
                user_id=serializer.validated_data.get("user_id"),
                actor=Actor.from_user(request.user),
                source="api",
            )
        except ClearRefused as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        return Response(result)


class HealthApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        summary="Readiness: database, cache, broker and zones snapshot, answered within a second",
        responses={
            200: OpenApiResponse(HealthSerializer, description="ok or degraded"),
            503: OpenApiResponse(HealthSerializer, description="down: the database is unreachable"),
        },
    )
    def get(self, request: Request) -> Response:
        report = health_check()
        code = status.HTTP_503_SERVICE_UNAVAILABLE if report["status"] == DOWN else status.HTTP_200_OK
        return Response(report, status=code, headers={"Cache-Control": "no-store"})


class LiveApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health_live", summary="Liveness: touches no dependency", responses={200: LiveSerializer}
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"}, headers={"Cache-Control": "no-store"})
