"""OpenAPI extensions: how drf-spectacular documents the project's own authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ContextTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ContextTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
