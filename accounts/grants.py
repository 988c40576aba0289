"""Least privilege for whoever edits grants: nobody grants, or acts on an account holding, more than they hold.

A permission reaches a user through a role (memberships), a group or the user's own
permissions, so each of those edits is checked the same way, in the admin and anywhere else
that edits grants on someone's behalf:

===================================  =================================================
edit                                 allowed for a non-superuser editor
===================================  =================================================
``is_superuser``, ``is_staff``,      never (superusers only)
groups, user permissions
a user (change, delete, password)    only a non-superuser whose permissions, dormant ones
                                     included, it holds
``Role.permissions``,                add or remove only permissions it holds; the others
``Group.permissions``                stay as they were
a membership's role                  only a role whose permissions it holds
===================================  =================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet

from accounts.models import Role, User

SUPERUSER_ONLY_USER_FIELDS = ("is_superuser", "is_staff", "groups", "user_permissions")


def is_superuser(editor: Any) -> bool:
    return bool(editor.is_active and editor.is_superuser)


def editor_permission_codes(editor: Any) -> set[str]:
    """``app_label.codename`` of everything the editor holds (from its cached context)."""
    return set(editor.get_all_permissions())


def _by_codes(codes: Iterable[str]) -> Q:
    query = Q(pk__in=[])
    for code in codes:
        app_label, _, codename = code.partition(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    return query


def grantable_permissions(editor: Any) -> QuerySet[Permission]:
    """The permissions the editor may add to or remove from a role or a group."""
    permissions = Permission.objects.select_related("content_type")
    if is_superuser(editor):
        return permissions.all()
    return permissions.filter(_by_codes(editor_permission_codes(editor)))


def permissions_after_edit(*, editor: Any, before: Iterable[int], submitted: Iterable[int]) -> set[int]:
    """Permission ids a role or group holds after the editor's change.

    ``submitted`` was validated against ``grantable_permissions``; what the editor may not
    grant stays exactly as it was, so an editor can neither add nor strip it.
    """
    submitted_ids = set(submitted)
    if is_superuser(editor):
        return submitted_ids
    grantable = set(grantable_permissions(editor).values_list("pk", flat=True))
    return (submitted_ids & grantable) | (set(before) - grantable)


def user_is_editable_by(*, editor: Any, user: User) -> bool:
    """Whether the editor may change, delete or set the password of ``user``.

    A superuser may edit anyone; anyone else only users who are not superusers and whose
    permissions it holds all of (taking over a more privileged account is an escalation too).
    """
    if is_superuser(editor):
        return True
    if user.is_superuser:
        return False
    return not potential_permissions(user).exclude(_by_codes(editor_permission_codes(editor))).exists()


def potential_permissions(user: User) -> QuerySet[Permission]:
    """Every permission ``user`` holds or would hold again by a switch someone else can flip:
    the roles of all its memberships (inactive ones, inactive organizations), its groups and
    its own. Deciding on the current permissions alone would let an editor take over a dormant
    stronger account, then revive it."""
    return Permission.objects.filter(Q(roles__memberships__user=user) | Q(group__user=user) | Q(user=user)).distinct()


def assignable_roles(editor: Any) -> QuerySet[Role]:
    """Roles the editor may give to a membership: those whose every permission it holds."""
    if is_superuser(editor):
        return Role.objects.all()
    not_held = Permission.objects.exclude(_by_codes(editor_permission_codes(editor)))
    return Role.objects.exclude(permissions__in=not_held)
