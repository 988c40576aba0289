"""Admin for users, organizations, roles, memberships and groups.

Writes reach cached contexts through signals. Every grant is edited under least privilege
(``accounts.grants``) and recorded in the access audit; history is read-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from accounts.forms import ThrottledAdminLoginForm
from accounts.grants import (
    SUPERUSER_ONLY_USER_FIELDS,
    assignable_roles,
    grantable_permissions,
    is_superuser,
    permissions_after_edit,
    user_is_editable_by,
)
from accounts.models import AccessAuditEntry, Membership, Organization, Profile, RevokedToken, Role, User
from accounts.services import access_audit_record, describe_set_change
from project.admin import StaffReadOnlyAdmin

# The admin login shares the API login's limiter (per username and per address).
admin.site.login_form = ThrottledAdminLoginForm


def _codes(permission_ids: set[int]) -> set[str]:
    rows = Permission.objects.filter(pk__in=permission_ids).values_list("content_type__app_label", "codename")
    return {f"{app_label}.{codename}" for app_label, codename in rows}


def _membership_state(membership: Membership | None) -> tuple[Any, ...]:
    if membership is None:
        return (None, None, False)
    return (membership.organization_id, membership.role_id, membership.is_active)


def _membership_changes(before: tuple[Any, ...], membership: Membership) -> list[str]:
    after = _membership_state(membership)
    if before == after:
        return []
    org, role, active = after
    return [
        f"membership: organization {before[0]} -> {org}, role {before[1]} -> {role}, active {before[2]} -> {active}"
    ]


class LeastPrivilegeMembershipMixin:
    """Membership forms offer only the roles the editor holds every permission of."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "role":
            kwargs["queryset"] = assignable_roles(request.user)
        elif db_field.name == "user" and not is_superuser(request.user):
            kwargs["queryset"] = User.objects.filter(is_superuser=False)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    extra = 0


class MembershipInline(LeastPrivilegeMembershipMixin, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["organization", "role"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [ProfileInline, MembershipInline]
    list_display = ("username", "email", "is_active", "is_staff", "is_superuser")
    list_select_related = ("profile",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if not is_superuser(request.user):
            fields += [name for name in SUPERUSER_ONLY_USER_FIELDS if name not in fields]
        return fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or user_is_editable_by(editor=request.user, user=obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or user_is_editable_by(editor=request.user, user=obj))

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """The bulk delete action checks no object; refuse it when one is out of the editor's reach."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if any(isinstance(obj, User) and not user_is_editable_by(editor=request.user, user=obj) for obj in objs):
            perms_needed = {*perms_needed, "users holding more than you"}
        return deleted, counts, perms_needed, protected

    def save_model(self, request: HttpRequest, obj: User, form: ModelForm, change: bool) -> None:
        if change and not user_is_editable_by(editor=request.user, user=User.objects.get(pk=obj.pk)):
            raise PermissionDenied
        before = User.objects.filter(pk=obj.pk).first() if change else None
        obj._access_before = {  # type: ignore[attr-defined]
            "is_superuser": before.is_superuser if before else False,
            "is_staff": before.is_staff if before else False,
            "is_active": before.is_active if before else True,
            "groups": set(before.groups.values_list("name", flat=True)) if before else set(),
            "user_permissions": _codes(set(before.user_permissions.values_list("pk", flat=True))) if before else set(),
        }
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        user: User = form.instance
        before: dict[str, Any] = getattr(user, "_access_before", {})
        changes = [
            f"{name}: {before[name]} -> {getattr(user, name)}"
            for name in ("is_superuser", "is_staff", "is_active")
            if name in before and before[name] != getattr(user, name)
        ]
        changes += describe_set_change(
            "groups", before.get("groups", set()), user.groups.values_list("name", flat=True)
        )
        changes += describe_set_change(
            "user_permissions",
            before.get("user_permissions", set()),
            _codes(set(user.user_permissions.values_list("pk", flat=True))),
        )
        access_audit_record(actor=request.user, target=f"user {user.get_username()}", changes=changes)

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        before = {m.pk: _membership_state(m) for m in Membership.objects.filter(user=form.instance)}
        super().save_formset(request, form, formset, change)
        changes: list[str] = []
        for membership in Membership.objects.filter(user=form.instance):
            changes += _membership_changes(before.get(membership.pk, _membership_state(None)), membership)
        access_audit_record(actor=request.user, target=f"user {form.instance.get_username()}", changes=changes)


class PermissionGrantAdmin(admin.ModelAdmin):
    """Roles and groups: an editor adds or removes only the permissions it holds itself."""

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "permissions":
            kwargs["queryset"] = grantable_permissions(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        obj._permissions_before = set(obj.permissions.values_list("pk", flat=True)) if change else set()
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        grant: Model = form.instance
        before: set[int] = getattr(grant, "_permissions_before", set())
        submitted = {permission.pk for permission in form.cleaned_data.get("permissions", [])}
        final = permissions_after_edit(editor=request.user, before=before, submitted=submitted)
        form.cleaned_data["permissions"] = Permission.objects.filter(pk__in=final)
        super().save_related(request, form, formsets, change)
        access_audit_record(
            actor=request.user,
            target=f"{grant._meta.model_name} {grant}",
            changes=describe_set_change("permissions", _codes(before), _codes(final)),
        )


@admin.register(Role)
class RoleAdmin(PermissionGrantAdmin):
    list_display = ("name",)
    search_fields = ("name",)
    filter_horizontal = ("permissions",)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(PermissionGrantAdmin, BaseGroupAdmin):  # type: ignore[misc]  # both typed as ModelAdmin[Any]
    pass


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Membership)
class MembershipAdmin(LeastPrivilegeMembershipMixin, admin.ModelAdmin):
    list_display = ("user", "organization", "role", "is_active", "created_at")
    list_filter = ("is_active", "role")
    list_select_related = ("user", "organization", "role")
    autocomplete_fields = ["user", "organization", "role"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or user_is_editable_by(editor=request.user, user=obj.user))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or user_is_editable_by(editor=request.user, user=obj.user))

    def save_model(self, request: HttpRequest, obj: Membership, form: ModelForm, change: bool) -> None:
        if not user_is_editable_by(editor=request.user, user=obj.user):
            raise PermissionDenied
        before = _membership_state(Membership.objects.filter(pk=obj.pk).first() if change else None)
        super().save_model(request, obj, form, change)
        access_audit_record(
            actor=request.user, target=f"user {obj.user.get_username()}", changes=_membership_changes(before, obj)
        )


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "display_name", "locale", "timezone")
    list_select_related = ("user",)
    search_fields = ("user__username", "display_name")


@admin.register(RevokedToken)
class RevokedTokenAdmin(StaffReadOnlyAdmin):
    list_display = ("jti", "user", "expires_at")
    list_select_related = ("user",)


@admin.register(AccessAuditEntry)
class AccessAuditEntryAdmin(StaffReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "target", "change")
    search_fields = ("actor_label", "target", "change")
    date_hierarchy = "created_at"
