"""URL routes: the API under /api/ (with its schema and documentation pages), the admin, health."""

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from project.docs import RedocDocsView, SwaggerDocsView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("accounts.urls")),
    path("api/", include("cachemgmt.urls")),
    path("api/", include("zones.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Interactive documentation on that schema, its assets from drf-spectacular-sidecar (no CDN).
    path("api/docs/", SwaggerDocsView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", RedocDocsView.as_view(url_name="schema"), name="api-redoc"),
    path("", include("cachemgmt.urls_ops")),
]

if settings.DEBUG:  # the demo serves the admin's static files itself
    urlpatterns += staticfiles_urlpatterns()

handler400 = "project.errors.bad_request"
handler403 = "project.errors.permission_denied"
handler404 = "project.errors.page_not_found"
handler500 = "project.errors.server_error"
