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
from django.db.models import Model, OuterRef, Subquery
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from accounts.forms import ThrottledAdminLoginForm
from accounts.grants import (
    SUPERUSER_ONLY_USER_FIELDS,
    assignable_roles,
    grantable_permissions,
    is_superuser,
    permissions_after_edit,
    user_is_editable_by,
)
from accounts.models import (
    AccessAuditEntry,
    Membership,
    Organization,
    Profile,
    RetiredRefreshToken,
    RevokedToken,
    Role,
    Session,
    User,
)
from accounts.services import access_audit_record, describe_set_change
from accounts.sessions import EndReason, sessions_end
from project.admin import StaffReadOnlyAdmin

# The admin login shares the API login's limiter (per username and per address).
admin.site.login_form = ThrottledAdminLoginForm


def _codes(permission_ids: set[int]) -> set[str]:
    rows = Permission.objects.filter(pk__in=permission_ids).values_list("content_type__app_label", "codename")
    return {f"{app_label}.{codename}" for app_label, codename in rows}


_MEMBERSHIP_FIELDS = ("user", "organization", "role", "active")


def _membership_state(membership: Membership | None) -> tuple[Any, ...]:
    if membership is None:
        return (None, None, None, False)
    return (membership.user_id, membership.organization_id, membership.role_id, membership.is_active)


def _membership_changes(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    if before == after:
        return []
    moved = ", ".join(
        f"{name} {old} -> {new}" for name, old, new in zip(_MEMBERSHIP_FIELDS, before, after, strict=True)
    )
    return [f"membership: {moved}"]


class AuditedDeleteMixin:
    """Deleting a grant (a user, a membership, a role, a group, an organization) is an access
    change too: each deletion, one by one or in bulk, goes in the access audit."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        target = f"{obj._meta.model_name} {obj}"
        super().delete_model(request, obj)  # type: ignore[misc]
        access_audit_record(actor=request.user, target=target, changes=["deleted"])

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        targets = [f"{obj._meta.model_name} {obj}" for obj in queryset]
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        for target in targets:
            access_audit_record(actor=request.user, target=target, changes=["deleted"])


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


_SESSION_FIELDS = ("device", "ip", "created_at", "last_used_at", "expires_at", "ended_at", "end_reason")


_SESSION_COLUMNS = ("device", "address", "signed in", "last used", "expires", "state")


@admin.register(User)
class UserAdmin(AuditedDeleteMixin, BaseUserAdmin):
    inlines = [ProfileInline, MembershipInline]
    list_display = ("username", "email", "organization", "role", "is_active", "is_staff", "is_superuser")
    list_select_related = ("profile",)
    list_filter = (
        ("memberships__organization", admin.RelatedOnlyFieldListFilter),
        ("memberships__role", admin.RelatedOnlyFieldListFilter),
        "is_staff",
        "is_superuser",
        "is_active",
    )
    actions = ["sign_out_everywhere"]

    def get_queryset(self, request: HttpRequest) -> Any:
        """The active membership's organization and role, one subquery each (no query per row)."""
        active = Membership.objects.filter(user=OuterRef("pk"), is_active=True)
        return (
            super()
            .get_queryset(request)
            .annotate(
                organization_name=Subquery(active.values("organization__name")[:1]),
                role_name=Subquery(active.values("role__name")[:1]),
            )
        )

    @admin.display(description="organization", ordering="organization_name")
    def organization(self, obj: Any) -> str:
        return obj.organization_name or "-"

    @admin.display(description="role", ordering="role_name")
    def role(self, obj: Any) -> str:
        return obj.role_name or "-"

    @admin.action(description="Sign out everywhere (end every session)", permissions=["change"])
    def sign_out_everywhere(self, request: HttpRequest, queryset: Any) -> None:
        ended = 0
        for user in queryset:
            if not user_is_editable_by(editor=request.user, user=user):
                raise PermissionDenied
        for user in queryset:
            count = sessions_end(user_id=user.pk, reason=EndReason.STAFF)
            ended += count
            access_audit_record(
                actor=request.user,
                target=f"user {user.get_username()}",
                changes=[f"signed out everywhere ({count} sessions)"],
            )
        self.message_user(request, f"{ended} sessions ended.")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append(("Sessions", {"fields": ("sessions_overview",)}))
        return fieldsets

    @admin.display(description="Sessions (newest first; end them with the list's action)")
    def sessions_overview(self, obj: User) -> str:
        """The user's sessions, read-only: device, address, times, and how each ended."""
        rows = Session.objects.filter(user=obj).order_by("-created_at")[:50]
        if not rows:
            return "No sessions."
        header = format_html(
            "<tr>{}</tr>", format_html_join("", "<th>{}</th>", ((label,) for label in _SESSION_COLUMNS))
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    row.device or "-",
                    row.ip or "-",
                    date_format(row.created_at, "DATETIME_FORMAT"),
                    date_format(row.last_used_at, "DATETIME_FORMAT"),
                    date_format(row.expires_at, "DATETIME_FORMAT"),
                    f"ended ({row.end_reason})" if row.ended_at else "live",
                )
                for row in rows
            ),
        )
        return format_html("<table>{}{}</table>", header, body)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [*super().get_readonly_fields(request, obj), "sessions_overview"]
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
        # Sessions and retired refresh tokens go with their user (the database allows exactly
        # that); nobody may delete them on their own, which must not stop the user's deletion.
        history = {Session, RetiredRefreshToken, RevokedToken}
        perms_needed = set(perms_needed) - {model._meta.verbose_name for model in history}
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
        after = {m.pk: _membership_state(m) for m in Membership.objects.filter(user=form.instance)}
        changes: list[str] = []
        for pk in sorted(before.keys() | after.keys()):  # removed rows are in before only
            changes += _membership_changes(
                before.get(pk, _membership_state(None)), after.get(pk, _membership_state(None))
            )
        access_audit_record(actor=request.user, target=f"user {form.instance.get_username()}", changes=changes)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            user = User.objects.get(pk=id)
            access_audit_record(actor=request.user, target=f"user {user.get_username()}", changes=["password set"])
        return response


class PermissionGrantAdmin(AuditedDeleteMixin, admin.ModelAdmin):
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
class OrganizationAdmin(AuditedDeleteMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "is_active")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def save_model(self, request: HttpRequest, obj: Organization, form: ModelForm, change: bool) -> None:
        before = Organization.objects.filter(pk=obj.pk).values_list("is_active", flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        if before is not None and before != obj.is_active:
            # Its members' roles are granted again, or withdrawn.
            access_audit_record(
                actor=request.user,
                target=f"organization {obj.slug}",
                changes=[f"is_active: {before} -> {obj.is_active}"],
            )


@admin.register(Membership)
class MembershipAdmin(AuditedDeleteMixin, LeastPrivilegeMembershipMixin, admin.ModelAdmin):
    list_display = ("user", "organization", "role", "is_active", "created_at")
    list_filter = ("is_active", "role", "organization")
    search_fields = ("user__username", "user__email", "organization__name", "organization__slug", "role__name")
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
            actor=request.user,
            target=f"user {obj.user.get_username()}",
            changes=_membership_changes(before, _membership_state(obj)),
        )


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "display_name", "locale", "timezone")
    list_select_related = ("user",)
    search_fields = ("user__username", "display_name")


@admin.register(Session)
class SessionAdmin(StaffReadOnlyAdmin):
    """Sessions are history: ended by their user, by staff (the users' action) or by a command,
    never edited or deleted here."""

    list_display = ("user", "device", "ip", "created_at", "last_used_at", "expires_at", "ended_at", "end_reason")
    list_filter = ("end_reason",)
    list_select_related = ("user",)
    search_fields = ("user__username", "device", "ip")
    fields = ("id", "user", *_SESSION_FIELDS, "max_expires_at")
    readonly_fields = fields


@admin.register(AccessAuditEntry)
class AccessAuditEntryAdmin(StaffReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "target", "change")
    search_fields = ("actor_label", "target", "change")
    date_hierarchy = "created_at"
