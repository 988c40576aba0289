"""Thin API views: a staff member starts a zone sync."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from cachemgmt.apis import STAFF_ERRORS, StaffApi
from cachemgmt.services import Actor
from zones.serializers import ZoneSyncOutputSerializer
from zones.services import zone_sync_start


class ZoneSyncApi(StaffApi):
    @extend_schema(
        operation_id="admin_zones_sync",
        summary="Start one zone sync (queued; with no broker it runs inline)",
        request=None,
        responses={
            202: ZoneSyncOutputSerializer,
            **STAFF_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        outcome = zone_sync_start(actor=Actor.from_user(request.user), source="api")
        return Response(outcome, status=status.HTTP_202_ACCEPTED)
