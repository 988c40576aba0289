from django.apps import AppConfig


class CachemgmtConfig(AppConfig):
    name = "cachemgmt"
    verbose_name = "Cache"
    default_auto_field = "django.db.models.BigAutoField"
