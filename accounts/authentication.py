"""DRF authentication from bearer tokens and the cached context: no SQL on a warm cache."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.context import UserContext
from accounts.selectors import user_context_get
from accounts.tokens import TokenClaims, TokenError, token_decode


class ContextUser:
    """A lightweight ``request.user`` built from the cached context (never from a query)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, context: UserContext) -> None:
        self.context = context
        self.id = self.pk = context.user_id
        self.username = context.username
        self.is_active = context.is_active
        self.is_staff = context.is_staff
        self.is_superuser = context.is_superuser

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return self.is_active and obj is None and perm in self.context.permissions

    def has_perms(self, perms: Any, obj: Any = None) -> bool:
        return all(self.has_perm(perm, obj) for perm in perms)

    def __str__(self) -> str:
        return self.username


class ContextTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>``; 401 with ``WWW-Authenticate: Bearer`` when refused."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[ContextUser, TokenClaims] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword:
            return None
        token = token.strip()
        if not token or " " in token:
            raise AuthenticationFailed("Invalid bearer header.", code="token_invalid")
        try:
            claims = token_decode(token)
        except TokenError as exc:
            raise AuthenticationFailed(str(exc), code=exc.code) from None
        context = user_context_get(user_id=claims.user_id)
        if context is None or not context.is_active:
            raise AuthenticationFailed("User inactive or deleted.", code="token_revoked")
        if claims.token_version != context.token_version or claims.session_id not in context.session_ids:
            # A password change, or the token's session ended (logout, reuse, staff, limit).
            raise AuthenticationFailed("Token has been revoked.", code="token_revoked")
        return ContextUser(context), claims

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
