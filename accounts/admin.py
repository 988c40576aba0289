"""Admin for users, organizations, roles and memberships (writes reach cached contexts via signals)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Membership, Organization, Profile, RevokedToken, Role, User


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["organization", "role"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [ProfileInline, MembershipInline]
    list_display = ("username", "email", "is_active", "is_staff", "is_superuser")
    list_select_related = ("profile",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ("name",)
    search_fields = ("name",)
    filter_horizontal = ("permissions",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "is_active", "created_at")
    list_filter = ("is_active", "role")
    list_select_related = ("user", "organization", "role")
    autocomplete_fields = ["user", "organization", "role"]


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "display_name", "locale", "timezone")
    list_select_related = ("user",)
    search_fields = ("user__username", "display_name")


@admin.register(RevokedToken)
class RevokedTokenAdmin(admin.ModelAdmin):
    list_display = ("jti", "user", "expires_at")
    list_select_related = ("user",)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
