"""The Django auth backend (admin and API logins, sessions): throttled, select_related loads, warm contexts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts.models import User
from accounts.selectors import user_context_get
from accounts.throttling import client_address, login_attempt_reserve


class ContextModelBackend(ModelBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        """Check a password under the shared login limiter (raises ``LoginThrottled``).

        Every door that checks a password calls ``authenticate()``, so limiting here covers the
        admin login, the API login and anything added later with one set of counters.
        ``address`` is the client address when the caller has no request at hand.
        """
        if username is None:
            username = kwargs.get(User.USERNAME_FIELD)
        if username is None or password is None:
            return None
        address = kwargs.pop("address", None) or (client_address(request) if request is not None else "")
        attempt = login_attempt_reserve(username=str(username), address=address)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            attempt.succeeded()
            user_context_get(user_id=user.pk)  # warm: the next request is a cache hit
        return user  # type: ignore[return-value]

    def get_user(self, user_id: int) -> User | None:
        try:
            user = User._default_manager.select_related("profile").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        """Permissions from the cached context: the admin's checks cost no query when warm."""
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        context = user_context_get(user_id=user_obj.pk)
        return set(context.permissions) if context is not None and context.is_active else set()
