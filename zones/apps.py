from django.apps import AppConfig


class ZonesConfig(AppConfig):
    name = "zones"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from zones import receivers

        receivers.connect()
