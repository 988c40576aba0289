"""DRF permission classes that read the cached context, never the database."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class HasContextPermissions(BasePermission):
    """Allows the request when the user's context holds every permission in ``view.required_permissions``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        required = getattr(view, "required_permissions", ())
        return bool(user.has_perms(required))


class IsStaff(BasePermission):
    """Staff only; anonymous callers get 401, authenticated non-staff 403."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
