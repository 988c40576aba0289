"""Signal receivers: every write that feeds a user context invalidates it (on commit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

from accounts.dependencies import context_invalidate
from accounts.models import Membership, Organization, Profile, Role, Session, User
from zones.signals import zones_changed

_M2M_WRITES = {"post_add", "post_remove", "post_clear", "pre_clear"}


# Saves touching only these fields change nothing in a context (Django's login updates
# last_login on every login; invalidating there would undo the backend's warm-up).
_USER_FIELDS_OUTSIDE_CONTEXT = frozenset({"last_login"})


def user_changed(sender: Any, instance: User, update_fields: frozenset[str] | None = None, **_: Any) -> None:
    if update_fields and set(update_fields) <= _USER_FIELDS_OUTSIDE_CONTEXT:
        return
    context_invalidate(user_ids=[instance.pk])


def user_row_changed(sender: Any, instance: Profile | Session, **_: Any) -> None:
    context_invalidate(user_ids=[instance.user_id])


def membership_changed(sender: Any, instance: Membership, **_: Any) -> None:
    user_ids = [instance.user_id]
    if instance._loaded_user_id is not None and instance._loaded_user_id != instance.user_id:
        user_ids.append(instance._loaded_user_id)
    context_invalidate(user_ids=user_ids)


def organization_changed(sender: Any, instance: Organization, **_: Any) -> None:
    context_invalidate(organization_ids=[instance.pk])


def role_changed(sender: Any, instance: Role, **_: Any) -> None:
    context_invalidate(role_ids=[instance.pk])


def permissions_changed(sender: Any, **_: Any) -> None:
    context_invalidate(permissions=True)


def group_permissions_changed(sender: Any, action: str, **_: Any) -> None:
    if action in _M2M_WRITES:
        context_invalidate(permissions=True)


def role_permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **_: Any
) -> None:
    if action not in _M2M_WRITES:
        return
    if not reverse:  # role.permissions.add(...)
        context_invalidate(role_ids=[instance.pk])
    elif pk_set:  # permission.roles.add(role, ...)
        context_invalidate(role_ids=pk_set)
    else:  # permission.roles.clear(): which roles is unknown after the fact
        context_invalidate(permissions=True)


def user_m2m_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **_: Any) -> None:
    """User.user_permissions and User.groups, from either side."""
    if action not in _M2M_WRITES:
        return
    if not reverse:  # user.groups.add(...), user.user_permissions.add(...)
        context_invalidate(user_ids=[instance.pk])
    elif pk_set:  # group.user_set.add(user, ...), permission.user_set.add(...)
        context_invalidate(user_ids=pk_set)
    else:
        context_invalidate(permissions=True)


def zones_snapshot_changed(sender: Any, organization_ids: list[int], every_organization: bool, **_: Any) -> None:
    context_invalidate(organization_ids=organization_ids, zones=every_organization)


def connect() -> None:
    receivers: list[tuple[type[Model], Callable[..., None]]] = [
        (User, user_changed),
        (Profile, user_row_changed),
        (Session, user_row_changed),
        (Membership, membership_changed),
        (Organization, organization_changed),
        (Role, role_changed),
        (Permission, permissions_changed),
        (Group, permissions_changed),
    ]
    for model, receiver in receivers:
        post_save.connect(receiver, sender=model, dispatch_uid=f"ctx-save-{model._meta.label}")
        post_delete.connect(receiver, sender=model, dispatch_uid=f"ctx-delete-{model._meta.label}")
    m2m_changed.connect(role_permissions_changed, sender=Role.permissions.through, dispatch_uid="ctx-role-perms")
    m2m_changed.connect(user_m2m_changed, sender=User.groups.through, dispatch_uid="ctx-user-groups")
    m2m_changed.connect(user_m2m_changed, sender=User.user_permissions.through, dispatch_uid="ctx-user-perms")
    m2m_changed.connect(group_permissions_changed, sender=Group.permissions.through, dispatch_uid="ctx-group-perms")
    zones_changed.connect(zones_snapshot_changed, dispatch_uid="ctx-zones")
