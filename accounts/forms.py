"""Admin forms: the throttled admin login."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from accounts.throttling import LoginThrottled


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin login under the API login's limiter (it lives in the authentication backend),
    refusing with a clear message rather than an error page."""

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except LoginThrottled as exc:
            minutes = max(1, round(exc.retry_after / 60))
            raise ValidationError(
                f"Too many failed login attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                code="throttled",
            ) from None
