from django.apps import AppConfig


class ZonesConfig(AppConfig):
    name = "zones"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cachemgmt import hooks
        from zones import receivers, selectors, services
        from zones.metrics import ZoneSyncCollector

        receivers.connect()
        # zones' part of the operations pages (cachemgmt never imports zones).
        hooks.health_check_register("zones", selectors.zone_snapshot_health, uses_database=True)
        hooks.namespace_details_register("zones", selectors.zone_last_sync_get)
        hooks.sync_starter_register(services.zone_sync_start)
        hooks.metrics_collector_register(ZoneSyncCollector())
