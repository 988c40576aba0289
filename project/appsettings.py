"""One accessor per app over a settings dict with documented defaults (DRF's api_settings pattern)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed


class AppSettings:
    """Attribute access to ``settings.<name>`` merged over ``defaults``; reloaded on change."""

    def __init__(self, name: str, defaults: dict[str, Any]) -> None:
        self._name = name
        self._defaults = defaults
        self._cache: dict[str, Any] | None = None
        setting_changed.connect(self._reload, weak=False)

    def _merged(self) -> dict[str, Any]:
        if self._cache is None:
            self._cache = {**self._defaults, **getattr(settings, self._name, {})}
        return self._cache

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        merged = self._merged()
        if attr not in merged:
            raise AttributeError(f"{self._name} has no setting {attr!r}")
        return merged[attr]

    def _reload(self, *, setting: str, **_: Any) -> None:
        if setting == self._name:
            self._cache = None
