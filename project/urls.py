"""URL routes: the API under /api/, the admin, health."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("accounts.urls")),
    path("api/", include("cachemgmt.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("", include("cachemgmt.urls_ops")),
]
