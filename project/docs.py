"""The interactive documentation pages (Swagger UI, Redoc) on the OpenAPI schema, confined to this host."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

# Every asset comes from drf-spectacular-sidecar through this host; the policy also stops what
# the viewers would fetch on their own (Redoc's logo from its CDN).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


class _SameHostOnly:
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


class SwaggerDocsView(_SameHostOnly, SpectacularSwaggerView):
    """``/api/docs/``: Swagger UI, with "Try it out" against this API."""


class RedocDocsView(_SameHostOnly, SpectacularRedocView):
    """``/api/redoc/``: Redoc."""
