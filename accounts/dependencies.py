"""Which rows feed a user context, and which cache keys a change of each bumps: both halves in one place.

A cached context records the dependency keys it was built from (``context_deps``); a
committed change bumps the keys of the rows it touched (``context_invalidate``, called by
the receivers, the services and, through ``zones.signals.zones_changed``, the zone sync),
and every entry built from an older value of a bumped key stops being served
(``cachemgmt.cache``).

=======================================================  =====================================
row changed                                              key bumped
=======================================================  =====================================
user (status, names, token version), its profile,        the user's key
its sessions, its memberships, its groups and user
permissions
organization (name, slug, active)                        the organization's key (every member)
role (name) or its permissions                           the role's key (every holder)
a permission or group row, or an m2m write whose         the global permissions key
rows cannot be named afterwards
zone assignments of an organization                      the organization's key
a zone's name, or the snapshot's status                  the global zones key
=======================================================  =====================================
"""

from __future__ import annotations

from collections.abc import Iterable

from accounts.context import UserContext
from cachemgmt import cache


def context_deps(context: UserContext) -> list[str]:
    """The dependency keys a context was built from."""
    deps = [cache.dep_user_key(context.user_id), cache.dep_permissions_key(), cache.dep_zones_key()]
    if context.organization_id is not None:
        deps.append(cache.dep_organization_key(context.organization_id))
    if context.role_id is not None:
        deps.append(cache.dep_role_key(context.role_id))
    return deps


def context_invalidate(
    *,
    user_ids: Iterable[int] = (),
    organization_ids: Iterable[int] = (),
    role_ids: Iterable[int] = (),
    permissions: bool = False,
    zones: bool = False,
) -> None:
    """Defeat every cached context built from these rows, once the current transaction commits.

    One cache round trip whatever the number of keys; a role or an organization is one key,
    however many users hold it. Inside a rolled-back transaction nothing happens.
    """
    deps = [cache.dep_user_key(uid) for uid in user_ids if uid is not None]
    deps += [cache.dep_organization_key(oid) for oid in organization_ids if oid is not None]
    deps += [cache.dep_role_key(rid) for rid in role_ids if rid is not None]
    if permissions:
        deps.append(cache.dep_permissions_key())
    if zones:
        deps.append(cache.dep_zones_key())
    if deps:
        cache.deps_bump_on_commit(deps)
