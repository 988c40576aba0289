"""Request and response shapes of the zones API."""

from __future__ import annotations

from rest_framework import serializers


class ZoneSyncQueuedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])


class ZoneSyncOutputSerializer(serializers.Serializer):
    """A sync that ran inline (no broker): its whole outcome."""

    status = serializers.ChoiceField(choices=["ok", "failed", "skipped"])
    source = serializers.CharField()  # type: ignore[assignment]  # a field, popped by DRF's metaclass
    run_id = serializers.IntegerField(allow_null=True)
    rows = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="rows left out (bad or unknown organization)")
    skipped_by_reason = serializers.DictField(child=serializers.IntegerField())
    error = serializers.CharField(allow_blank=True)
    failure = serializers.CharField(allow_blank=True, help_text='"", "source", "data" or "config"')
    duration = serializers.FloatField(help_text="seconds")
    read_seconds = serializers.FloatField()
    write_seconds = serializers.FloatField()
    zones_created = serializers.IntegerField()
    zones_renamed = serializers.IntegerField()
    zones_deleted = serializers.IntegerField()
    assignments_added = serializers.IntegerField()
    assignments_removed = serializers.IntegerField()
    organizations_changed = serializers.IntegerField()
