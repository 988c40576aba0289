"""The JSON parser every endpoint uses: a depth and size limit checked before anything recurses."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import APIException, ParseError

# A JSON string (skipped whole, so brackets inside it do not count) or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]+|\\.)*"|[\[\]{}]', re.S)


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "Request body too large."
    default_code = "payload_too_large"


def nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit`` anywhere in ``body``.

    Bodies with fewer brackets than the limit (nearly all) are answered by two counts.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser behind two limits: ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (413, also
    for bodies sent without a Content-Length) and ``JSON_MAX_DEPTH`` levels of nesting
    (400), so no body can exhaust the parser's recursion."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        if str(encoding).lower().replace("_", "-") not in {"utf-8", "utf8"}:
            # JSON is UTF-8 (RFC 8259), and a body in another charset would reach the parser
            # with brackets the depth check below cannot see.
            raise ParseError("JSON bodies must be UTF-8.", code="invalid")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1 if limit is not None else -1) if stream is not None else b""
        if limit is not None and len(body) > limit:
            raise PayloadTooLarge(f"Request body too large (limit {limit} bytes).")
        max_depth = int(settings.JSON_MAX_DEPTH)
        if nesting_exceeds(body, max_depth):
            raise ParseError(f"JSON parse error - nested deeper than {max_depth} levels.", code="invalid")
        return super().parse(io.BytesIO(body), media_type, parser_context)
