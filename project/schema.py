"""OpenAPI extensions: how drf-spectacular documents the project's own authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ContextTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ContextTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


# Answers any operation may give, whatever its view says: the database unreachable (503, with
# Retry-After), a body too large (413) or not JSON (415) where there is a body, an Accept header
# the API cannot satisfy (406). Added to every operation by this postprocessing hook.
_DETAIL = {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
_COMMON = {
    "503": {
        "description": "The database cannot be reached; retry after the given seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds before a retry."}},
        "content": _DETAIL,
    },
    "406": {"description": "The Accept header names no type this API answers with.", "content": _DETAIL},
}
# A 400 is either field errors (``{"field": ["message", ...]}``) or one error (malformed JSON).
_BAD_REQUEST = {
    "application/json": {
        "schema": {
            "oneOf": [
                {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                {"$ref": "#/components/schemas/Detail"},
            ]
        }
    }
}
_WITH_BODY = {
    "413": {"description": "The body is larger than MAX_REQUEST_BODY.", "content": _DETAIL},
    "415": {"description": "The body is not application/json (or not UTF-8).", "content": _DETAIL},
}


def add_common_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents the answers of ``_COMMON``
    (and, with a request body, of ``_WITH_BODY``)."""
    for path, item in result.get("paths", {}).items():
        if not path.startswith("/api/") or path.startswith("/api/schema") or path in {"/api/docs/", "/api/redoc/"}:
            continue
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status, answer in _COMMON.items():
                responses.setdefault(status, answer)
            if "requestBody" in operation:
                for status, answer in _WITH_BODY.items():
                    responses.setdefault(status, answer)
            bad_request = responses.get("400")
            if bad_request is not None and "content" not in bad_request:
                bad_request["content"] = _BAD_REQUEST
    return result
