"""URL routes: the API under /api/ (with its schema and documentation pages), the admin, health."""

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, include, path
from django.urls.resolvers import RoutePattern
from drf_spectacular.views import SpectacularAPIView

from accounts import urls as accounts_urls
from cachemgmt import urls as cachemgmt_urls
from project.docs import RedocDocsView, SwaggerDocsView
from zones import urls as zones_urls


def _mounted(prefix: str, routes: list[URLPattern]) -> list[URLPattern]:
    """An app's routes under ``prefix``, as routes of this urlconf.

    ``path(prefix, include(...))`` would resolve every API request through a second resolver
    level (a match object per level); the same routes mounted flat resolve in one.
    """
    for route in routes:
        if not isinstance(route, URLPattern) or not isinstance(route.pattern, RoutePattern):
            raise ImproperlyConfigured(f"{route!r}: only path() routes can be mounted under {prefix!r}")
    return [path(prefix + str(route.pattern), route.callback, route.default_args, route.name) for route in routes]


urlpatterns = [
    *_mounted("api/", accounts_urls.urlpatterns),
    *_mounted("api/", cachemgmt_urls.urlpatterns),
    *_mounted("api/", zones_urls.urlpatterns),
    path("admin/", admin.site.urls),
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
