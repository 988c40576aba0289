"""Routes of the operations API, mounted under /api/."""

from django.urls import path

from cachemgmt import apis

urlpatterns = [
    path("admin/cache/stats", apis.CacheStatsApi.as_view(), name="admin-cache-stats"),
    path("admin/cache/clear", apis.CacheClearApi.as_view(), name="admin-cache-clear"),
]
