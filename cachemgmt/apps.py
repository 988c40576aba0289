from django.apps import AppConfig


class CachemgmtConfig(AppConfig):
    name = "cachemgmt"
    verbose_name = "Cache"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cachemgmt import counters
        from project import request_context, schema  # noqa: F401 - registers the OpenAPI auth extension

        request_context.celery_signals_connect()
        counters.celery_signals_connect()
