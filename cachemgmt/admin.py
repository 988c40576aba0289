"""Admin: the Cache page (statistics, clearing, zone sync, each confirmed first) and the read-only audit trail."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cachemgmt import cache, hooks
from cachemgmt.forms import CacheClearForm
from cachemgmt.models import CacheAuditEntry, CachePage
from cachemgmt.selectors import audit_entries_recent, cache_stats_get
from cachemgmt.services import Actor, ClearRefused, cache_clear, outcome_summary
from project.admin import StaffReadOnlyAdmin


@admin.register(CacheAuditEntry)
class CacheAuditEntryAdmin(StaffReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "source", "action", "target", "result")
    list_filter = ("action", "source")
    search_fields = ("actor_label", "target", "result")
    readonly_fields = ("created_at", "actor", "actor_label", "source", "action", "target", "result")
    date_hierarchy = "created_at"


def _for_people(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The statistics as the page shows them: ratios as percentages, times as datetimes."""
    if stats is None:
        return None
    shown = {**stats, "since": _parsed(stats.get("since"))}
    shown["namespaces"] = {
        name: {**counters, "hit_percent": f"{100 * float(counters.get('hit_ratio') or 0):.1f} %"}
        for name, counters in stats.get("namespaces", {}).items()
    }
    last = shown["namespaces"].get("zones", {}).get("last_sync")
    if last:
        shown["namespaces"]["zones"]["last_sync"] = {**last, "finished_at": _parsed(last.get("finished_at"))}
    return shown


def _parsed(value: Any) -> Any:
    return parse_datetime(value) if isinstance(value, str) else value


@contextmanager
def _staff_time_zone(request: HttpRequest) -> Iterator[None]:
    """Times in the staff member's own time zone (their profile's), else the site's."""
    name = getattr(getattr(request.user, "profile", None), "timezone", None)
    try:
        zone = zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is None:
        yield
        return
    with timezone.override(zone):
        yield


@admin.register(CachePage)
class CachePageAdmin(StaffReadOnlyAdmin):
    """Not a model list: the Cache page and its two confirmed actions, for every staff user."""

    def get_urls(self) -> list[URLPattern]:
        # Only these three: the model has no table, so the default change views must not exist.
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name=f"{name}_changelist"),
            path("clear/", wrap(self.clear_view), name=f"{name}_clear"),
            path("sync/", wrap(self.sync_view), name=f"{name}_sync"),
        ]

    def _page_url(self) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist", current_app=self.admin_site.name
        )

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, "page_url": self._page_url(), **extra}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.admin_site.name))
        try:
            stats: dict[str, Any] | None = cache_stats_get()
        except cache.CacheUnavailable:
            stats = None
            messages.warning(request, "The shared cache cannot be read right now; statistics are unavailable.")
        clear_form = CacheClearForm(initial={"namespace": "user_context"})
        context = self._context(
            request,
            title="Cache",
            stats=_for_people(stats),
            clear_form=clear_form,
            media=self.media + clear_form.media,
            audit_entries=audit_entries_recent(limit=10),
            time_zone=timezone.get_current_timezone_name(),
        )
        with _staff_time_zone(request):
            context["time_zone"] = timezone.get_current_timezone_name()
            return render(request, "admin/cachemgmt/cache.html", context)

    def clear_view(self, request: HttpRequest) -> HttpResponse:
        """GET: confirm what will be cleared; POST (confirmed): clear it and say what was cleared."""
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.admin_site.name))
        form = CacheClearForm(request.POST if request.method == "POST" else request.GET)
        if not form.is_valid():
            errors = "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in form.errors.items())
            messages.error(request, f"Nothing was cleared: {errors}")
            return HttpResponseRedirect(self._page_url())
        if request.method != "POST":
            return render(
                request,
                "admin/cachemgmt/confirm.html",
                self._context(
                    request,
                    title="Are you sure?",
                    question=f"Clear {form.describe()}? Every entry in it is rebuilt from the database on next use.",
                    action_url=reverse("admin:cachemgmt_cachepage_clear", current_app=self.admin_site.name),
                    hidden={k: v for k, v in form.cleaned_data.items() if v is not None and k not in {"user", "scope"}},
                    confirm_label="Yes, clear it",
                ),
            )
        try:
            result = cache_clear(
                namespace=form.cleaned_data["namespace"],
                user_id=form.cleaned_data.get("user_id"),
                actor=Actor.from_user(request.user),
                source="admin",
            )
        except ClearRefused as exc:
            messages.error(request, f"Nothing was cleared: {exc}")
        else:
            messages.success(request, f"Cleared: {', '.join(result['cleared'])}.")
        return HttpResponseRedirect(self._page_url())

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        """GET: confirm; POST (confirmed): start one zone sync and report its outcome."""
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.admin_site.name))
        if request.method != "POST":
            return render(
                request,
                "admin/cachemgmt/confirm.html",
                self._context(
                    request,
                    title="Are you sure?",
                    question="Run a zone sync now? It reads every zone mapping from the configured source.",
                    action_url=reverse("admin:cachemgmt_cachepage_sync", current_app=self.admin_site.name),
                    hidden={},
                    confirm_label="Yes, run the sync",
                ),
            )
        start = hooks.sync_starter()
        if start is None:
            messages.error(request, "Zone sync is not available in this build.")
            return HttpResponseRedirect(self._page_url())
        try:
            outcome = start(actor=Actor.from_user(request.user), source="admin")
        except Exception as exc:  # noqa: BLE001 - the operator sees the failure; it is audited and logged
            messages.error(request, f"Zone sync failed: {type(exc).__name__}: {exc}")
        else:
            level = messages.ERROR if outcome.get("status") == "failed" else messages.SUCCESS
            messages.add_message(request, level, f"Zone sync: {outcome_summary(outcome)}.")
        return HttpResponseRedirect(self._page_url())
