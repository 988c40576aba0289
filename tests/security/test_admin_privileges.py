"""Least privilege in the admin: staff cannot grant what they do not hold, nor take over who holds more."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import AccessAuditEntry, Membership, User
from tests.factories import PASSWORD, MembershipFactory, RoleFactory, UserFactory, permission

pytestmark = pytest.mark.django_db

STAFF_PERMS = [
    "accounts.view_user",
    "accounts.change_user",
    "accounts.delete_user",
    "accounts.view_role",
    "accounts.change_role",
    "accounts.view_membership",
    "accounts.change_membership",
    "accounts.add_membership",
    "auth.view_group",
    "auth.change_group",
]


def staff_client(perms: list[str] = STAFF_PERMS) -> tuple[Client, User]:
    """A staff user (not superuser) whose role holds ``perms``, logged in to the admin."""
    staff = UserFactory(is_staff=True)
    MembershipFactory(user=staff, role=RoleFactory(perms=perms))
    client = Client()
    assert client.login(username=staff.username, password=PASSWORD)
    return client, staff


def me(user: User) -> dict:
    login = APIClient().post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json")
    assert login.status_code == 200, login.content
    return login.json()["context"]


def user_form(user: User, **changes: object) -> dict:
    """The admin change form of ``user`` as a browser would submit it, with ``changes``."""
    data: dict[str, object] = {
        "username": user.username,
        "email": user.email,
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "1",
        "profile-0-id": user.profile.pk,
        "profile-0-user": user.pk,
        "profile-0-display_name": user.profile.display_name,
        "profile-0-locale": "en",
        "profile-0-timezone": "UTC",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    for membership in Membership.objects.filter(user=user):
        i = int(str(data["memberships-TOTAL_FORMS"]))
        data.update(
            {
                f"memberships-{i}-id": membership.pk,
                f"memberships-{i}-user": user.pk,
                f"memberships-{i}-organization": membership.organization_id,
                f"memberships-{i}-role": membership.role_id,
                f"memberships-{i}-is_active": "on",
            }
        )
        data["memberships-TOTAL_FORMS"] = data["memberships-INITIAL_FORMS"] = str(i + 1)
    data.update(changes)
    return data


def test_staff_cannot_make_themselves_superuser_or_grant_themselves_permissions():
    client, staff = staff_client()
    every_permission = list(Permission.objects.values_list("pk", flat=True))
    group = Group.objects.create(name="everything")
    group.permissions.set(every_permission)
    response = client.post(
        f"/admin/accounts/user/{staff.pk}/change/",
        user_form(staff, is_superuser="on", is_staff="on", user_permissions=every_permission, groups=[group.pk]),
    )
    assert response.status_code == 302, response.content[:3000]  # the rest of the form saves
    staff.refresh_from_db()
    assert not staff.is_superuser
    assert not staff.user_permissions.exists() and not staff.groups.exists()
    context = me(staff)
    assert context["user"]["is_superuser"] is False
    assert set(context["permissions"]) == set(STAFF_PERMS)


def test_the_admin_form_shows_privilege_fields_read_only_to_staff():
    client, staff = staff_client()
    page = client.get(f"/admin/accounts/user/{staff.pk}/change/").content.decode()
    for field in ("is_superuser", "is_staff", "user_permissions", "groups"):
        assert f'name="{field}"' not in page, field


def test_staff_cannot_edit_a_superuser_nor_set_its_password():
    client, _ = staff_client()
    root = UserFactory(is_staff=True, is_superuser=True)
    assert client.post(f"/admin/accounts/user/{root.pk}/change/", user_form(root, is_active="")).status_code == 403
    password_url = f"/admin/accounts/user/{root.pk}/password/"
    new = {"password1": "a new password 123!", "password2": "a new password 123!", "usable_password": "true"}
    assert client.post(password_url, new).status_code == 403
    root.refresh_from_db()
    assert root.is_active and root.check_password(PASSWORD)


def test_staff_cannot_edit_a_user_holding_a_permission_they_lack():
    client, _ = staff_client()
    stronger = MembershipFactory(role=RoleFactory(perms=["accounts.delete_organization"])).user
    response = client.post(f"/admin/accounts/user/{stronger.pk}/change/", user_form(stronger, email="x@evil.test"))
    assert response.status_code == 403
    weaker = MembershipFactory(role=RoleFactory(perms=["accounts.view_user"])).user
    response = client.post(f"/admin/accounts/user/{weaker.pk}/change/", user_form(weaker, email="ok@example.com"))
    assert response.status_code == 302
    weaker.refresh_from_db()
    assert weaker.email == "ok@example.com"


def test_staff_cannot_bulk_delete_a_superuser():
    # With every permission the deletion cascades to, so only the target itself can stop it.
    client, _ = staff_client([*STAFF_PERMS, "accounts.delete_profile", "accounts.delete_membership"])
    root = UserFactory(is_superuser=True, is_staff=True)
    response = client.post(
        "/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [root.pk], "post": "yes"}
    )
    assert response.status_code in {200, 403}
    assert User.objects.filter(pk=root.pk).exists()


def test_a_role_gains_only_permissions_its_editor_holds_and_keeps_the_others():
    client, staff = staff_client()
    role = RoleFactory(name="target", perms=["accounts.delete_organization"])  # held by the role, not by staff
    grab = permission("accounts.add_organization")  # held by nobody here
    response = client.post(f"/admin/accounts/role/{role.pk}/change/", {"name": "target", "permissions": [grab.pk]})
    assert response.status_code == 200  # the form refuses the choice
    assert "Select a valid choice" in response.content.decode()
    assert set(role.permissions.values_list("codename", flat=True)) == {"delete_organization"}

    held = permission("accounts.view_user")
    response = client.post(f"/admin/accounts/role/{role.pk}/change/", {"name": "target", "permissions": [held.pk]})
    assert response.status_code == 302
    # The staff member added what it holds; what it does not hold stays, neither added nor stripped.
    assert set(role.permissions.values_list("codename", flat=True)) == {"view_user", "delete_organization"}
    entry = AccessAuditEntry.objects.get(target="role target")
    assert entry.actor_id == staff.pk and entry.change == "permissions: +accounts.view_user"


def test_staff_cannot_widen_their_own_role():
    client, staff = staff_client()
    role = staff.memberships.get().role
    every_permission = list(Permission.objects.values_list("pk", flat=True))
    response = client.post(
        f"/admin/accounts/role/{role.pk}/change/", {"name": role.name, "permissions": every_permission}
    )
    assert response.status_code == 200
    assert set(me(staff)["permissions"]) == set(STAFF_PERMS)


def test_group_permissions_follow_the_same_rule():
    client, _ = staff_client()
    group = Group.objects.create(name="ops")
    grab = permission("accounts.add_organization")
    response = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "ops", "permissions": [grab.pk]})
    assert response.status_code == 200 and not group.permissions.exists()
    held = permission("accounts.view_role")
    response = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "ops", "permissions": [held.pk]})
    assert response.status_code == 302
    assert list(group.permissions.all()) == [held]


def test_staff_cannot_give_themselves_a_stronger_role_through_a_membership():
    client, staff = staff_client()
    strong = RoleFactory(name="strong", perms=[*STAFF_PERMS, "accounts.delete_organization"])
    membership = staff.memberships.get()
    response = client.post(
        f"/admin/accounts/membership/{membership.pk}/change/",
        {"user": staff.pk, "organization": membership.organization_id, "role": strong.pk, "is_active": "on"},
    )
    assert response.status_code == 200  # not a valid choice for this editor
    membership.refresh_from_db()
    assert membership.role_id != strong.pk
    assert "accounts.delete_organization" not in me(staff)["permissions"]


def test_a_superuser_grants_freely_and_every_change_is_audited():
    root = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username=root.username, password=PASSWORD)
    target = MembershipFactory().user
    perm = permission("zones.view_zone")
    response = client.post(
        f"/admin/accounts/user/{target.pk}/change/", user_form(target, is_staff="on", user_permissions=[perm.pk])
    )
    assert response.status_code == 302, response.content[:3000]
    target.refresh_from_db()
    assert target.is_staff and "zones.view_zone" in me(target)["permissions"]
    entry = AccessAuditEntry.objects.get(target=f"user {target.username}")
    assert entry.actor_label == root.username
    assert "is_staff: False -> True" in entry.change and "user_permissions: +zones.view_zone" in entry.change


def test_staff_cannot_take_over_a_dormant_stronger_account():
    """A strong role in an inactive organization grants nothing today, but would again the
    moment the organization is switched back on: its holder counts as holding it."""
    client, _ = staff_client([*STAFF_PERMS, "accounts.change_organization"])
    dormant = MembershipFactory(role=RoleFactory(perms=["accounts.delete_organization"]))
    type(dormant.organization).objects.filter(pk=dormant.organization_id).update(is_active=False)
    new = {"password1": "a new password 123!", "password2": "a new password 123!", "usable_password": "true"}
    assert client.post(f"/admin/accounts/user/{dormant.user_id}/password/", new).status_code == 403
    assert client.post(f"/admin/accounts/user/{dormant.user_id}/change/", user_form(dormant.user)).status_code == 403


def test_a_superuser_deletes_a_user_who_logged_out_and_it_is_audited():
    root = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username=root.username, password=PASSWORD)
    leaving = MembershipFactory().user
    token = (
        me(leaving)
        and APIClient()
        .post("/api/auth/login", {"username": leaving.username, "password": PASSWORD}, format="json")
        .json()["access_token"]
    )
    APIClient().post("/api/auth/logout", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.post(f"/admin/accounts/user/{leaving.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:2000]
    assert not User.objects.filter(pk=leaving.pk).exists()
    assert AccessAuditEntry.objects.filter(target=f"user {leaving.username}", change="deleted").exists()


def test_membership_removals_moves_and_password_sets_are_audited():
    root = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username=root.username, password=PASSWORD)
    member = MembershipFactory()
    other = UserFactory()
    response = client.post(
        f"/admin/accounts/membership/{member.pk}/change/",
        {"user": other.pk, "organization": member.organization_id, "role": member.role_id, "is_active": "on"},
    )
    assert response.status_code == 302
    assert AccessAuditEntry.objects.filter(change__contains=f"user {member.user_id} -> {other.pk}").exists()
    new = {"password1": "a new password 123!", "password2": "a new password 123!", "usable_password": "true"}
    assert client.post(f"/admin/accounts/user/{other.pk}/password/", new).status_code == 302
    assert AccessAuditEntry.objects.filter(target=f"user {other.username}", change="password set").exists()
    assert client.post(f"/admin/accounts/membership/{member.pk}/delete/", {"post": "yes"}).status_code == 302
    assert AccessAuditEntry.objects.filter(target__startswith="membership", change="deleted").exists()
