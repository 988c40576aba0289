"""Key layout: every key the cache writes, each with exactly one builder."""

from __future__ import annotations

import functools
from typing import Any

from django.core.signals import setting_changed

from cachemgmt.conf import cachemgmt_settings

NAMESPACES: tuple[str, ...] = ("user_context", "zones")


# Remembered: every request builds keys, and a settings lookup costs more than the rest of a build.
@functools.cache
def _prefix() -> str:
    return str(cachemgmt_settings.KEY_PREFIX)


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "CACHEMGMT":
        _prefix.cache_clear()


setting_changed.connect(_on_setting_changed)


def clock_key() -> str:
    return f"{_prefix()}:clock"


def namespace_key(namespace: str) -> str:
    return f"{_prefix()}:ns:{namespace}"


def entry_key(namespace: str, ident: int | str) -> str:
    return f"{_prefix()}:e:{namespace}:{ident}"


def fill_lock_key(namespace: str, ident: int | str) -> str:
    return f"{_prefix()}:lock:{namespace}:{ident}"


def dep_user_key(user_id: int) -> str:
    return f"{_prefix()}:dep:u:{int(user_id)}"


def dep_organization_key(organization_id: int) -> str:
    return f"{_prefix()}:dep:o:{int(organization_id)}"


def dep_role_key(role_id: int) -> str:
    return f"{_prefix()}:dep:r:{int(role_id)}"


def dep_permissions_key() -> str:
    """Groups, group permissions and the permission table itself: rare, wide changes."""
    return f"{_prefix()}:dep:perms"


def dep_zones_key() -> str:
    """The zones snapshot as a whole (zone names, sync outcomes)."""
    return f"{_prefix()}:dep:zones"


def replication_marker_key() -> str:
    """The replication id of the primary the cache was last cleared on (Sentinel failovers)."""
    return f"{_prefix()}:replid"


def near_lease_key() -> str:
    """Written (NX, 1 s) by every process's near cache to renew its lease; never tracked."""
    return f"{_prefix()}:near:lease"


def tracked_prefixes() -> tuple[str, str]:
    """Every key an entry can depend on starts with one of these (the near cache tracks them)."""
    return (f"{_prefix()}:dep:", f"{_prefix()}:ns:")


def stats_key(namespace: str) -> str:
    return f"{_prefix()}:stats:{namespace}"


def stats_since_key() -> str:
    return f"{_prefix()}:stats:since"


def throttle_key(scope: str, digest: str) -> str:
    return f"throttle:{scope}:{digest}"


def task_lock_key(name: str) -> str:
    return f"tasklock:{name}"
