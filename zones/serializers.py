"""Request and response shapes of the zones API."""

from __future__ import annotations

from rest_framework import serializers


class ZoneSyncOutputSerializer(serializers.Serializer):
    status = serializers.CharField(
        help_text='"queued", or with no broker the inline run\'s status (ok, failed, skipped)'
    )
    run_id = serializers.IntegerField(required=False, allow_null=True)
    rows = serializers.IntegerField(required=False)
    skipped = serializers.IntegerField(required=False)
    error = serializers.CharField(required=False, allow_blank=True)
