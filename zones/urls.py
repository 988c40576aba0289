"""Routes of the zones API, mounted under /api/."""

from django.urls import path

from zones import apis

urlpatterns = [
    path("admin/zones/sync", apis.ZoneSyncApi.as_view(), name="admin-zones-sync"),
]
