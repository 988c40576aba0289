"""Request and response shapes of the operations API (statistics, clearing, zone sync, health)."""

from __future__ import annotations

from rest_framework import serializers

from cachemgmt.services import CLEAR_CHOICES

# The largest id a bigint primary key holds: larger ones are a client error, not a database one.
MAX_ID = 2**63 - 1


class CacheClearInputSerializer(serializers.Serializer):
    namespace = serializers.ChoiceField(choices=list(CLEAR_CHOICES))
    user_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID)


class CacheClearOutputSerializer(serializers.Serializer):
    namespace = serializers.ChoiceField(choices=list(CLEAR_CHOICES))
    cleared = serializers.ListField(child=serializers.CharField())


class LastSyncSerializer(serializers.Serializer):
    status = serializers.CharField()
    finished_at = serializers.DateTimeField(allow_null=True)
    rows = serializers.IntegerField()
    run_id = serializers.IntegerField()
    error = serializers.CharField(required=False, help_text="only when the run failed")


class NamespaceStatsSerializer(serializers.Serializer):
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()
    hit_ratio = serializers.FloatField()
    near_hits = serializers.IntegerField(
        help_text="hits served from a process's near cache in front of Redis, without a round trip"
    )
    fills = serializers.IntegerField()
    invalidations = serializers.IntegerField()
    keys = serializers.IntegerField(allow_null=True, help_text="null where counting is not cheap (Redis)")


class ZonesStatsSerializer(NamespaceStatsSerializer):
    last_sync = LastSyncSerializer(allow_null=True)


class NamespacesSerializer(serializers.Serializer):
    user_context = NamespaceStatsSerializer()
    zones = ZonesStatsSerializer()


class ServerSerializer(serializers.Serializer):
    used_memory = serializers.IntegerField()
    connected_clients = serializers.IntegerField()


class CarrierSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=["off", "leader", "standby", "local"],
        help_text="this process's carrier: off (it runs none), leader or standby (shared cache), local",
    )
    trusted = serializers.BooleanField(help_text="whether this process serves cached contexts right now")
    cursor = serializers.IntegerField(help_text="the last dependency change applied")
    pending = serializers.IntegerField(allow_null=True, help_text="changes recorded after the cursor")
    lag_seconds = serializers.FloatField(
        allow_null=True, help_text="age of the carrier's last pass that left nothing pending"
    )
    bound_seconds = serializers.FloatField(help_text="past this lag, cached contexts are not served")


class CacheStatsSerializer(serializers.Serializer):
    backend = serializers.CharField(help_text="redis, or locmem for the in-process cache")
    since = serializers.DateTimeField()
    namespaces = NamespacesSerializer()
    server = ServerSerializer(allow_null=True, help_text="null for the in-process cache")
    carrier = CarrierSerializer(help_text="the carrier of database-recorded changes into the cache")


class HealthCheckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down", "timeout", "skipped"])
    latency_ms = serializers.FloatField(allow_null=True)


class HealthChecksSerializer(serializers.Serializer):
    database = HealthCheckSerializer()
    cache = HealthCheckSerializer()
    broker = HealthCheckSerializer()
    carrier = HealthCheckSerializer(help_text="skipped in a process that runs no carrier; degraded past the bound")
    zones = HealthCheckSerializer()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    checks = HealthChecksSerializer()


class LiveSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])


class DetailSerializer(serializers.Serializer):
    """Every error answer that is not a list of field errors."""

    detail = serializers.CharField(help_text="For people; may change.")
    code = serializers.CharField(help_text="Stable, for programs: token_expired, refresh_reused, throttled, ...")
