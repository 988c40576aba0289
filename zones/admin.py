"""Admin for zones, assignments and sync runs (runs are read-only records)."""

from __future__ import annotations

from django.contrib import admin

from project.admin import StaffReadOnlyAdmin
from zones.models import Zone, ZoneAssignment, ZoneSyncRun


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(ZoneAssignment)
class ZoneAssignmentAdmin(admin.ModelAdmin):
    list_display = ("organization", "zone")
    list_select_related = ("organization", "zone")
    list_filter = ("organization",)
    autocomplete_fields = ["organization", "zone"]


@admin.register(ZoneSyncRun)
class ZoneSyncRunAdmin(StaffReadOnlyAdmin):
    list_display = ("started_at", "finished_at", "source", "status", "rows", "skipped")
    list_filter = ("status", "source")
    readonly_fields = ("started_at", "finished_at", "source", "status", "rows", "skipped", "error")
