"""Thin API views: a staff member starts a zone sync."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from cachemgmt.apis import STAFF_ERRORS, StaffApi
from cachemgmt.services import Actor
from zones.serializers import ZoneSyncOutputSerializer, ZoneSyncQueuedSerializer
from zones.services import zone_sync_start


class ZoneSyncApi(StaffApi):
    @extend_schema(
        operation_id="admin_zones_sync",
        summary="Start one zone sync (queued: 202; with no broker it runs inline: 200 with its outcome)",
        request=None,
        responses={
            200: ZoneSyncOutputSerializer,
            202: ZoneSyncQueuedSerializer,
            **STAFF_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        outcome = zone_sync_start(actor=Actor.from_user(request.user), source="api")
        queued = outcome.get("status") == "queued"
        return Response(outcome, status=status.HTTP_202_ACCEPTED if queued else status.HTTP_200_OK)
