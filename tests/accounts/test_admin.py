"""The Django admin: its login warms the context, and its edits reach cached contexts."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.selectors import user_context_get
from tests.factories import PASSWORD, MembershipFactory, OrganizationFactory, RoleFactory, UserFactory, permission

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client_logged_in() -> Client:
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username=admin.username, password=PASSWORD)
    return client


def test_admin_login_warms_the_context(django_assert_num_queries):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    response = client.post("/admin/login/", {"username": admin.username, "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302
    with django_assert_num_queries(0):
        context = user_context_get(user_id=admin.pk)
    assert context is not None and context.is_superuser


def test_admin_session_user_is_loaded_with_its_profile(admin_client_logged_in, django_assert_max_num_queries):
    response = admin_client_logged_in.get("/admin/")
    assert response.status_code == 200
    user = response.wsgi_request.user
    with django_assert_max_num_queries(0):
        assert user.profile.display_name  # select_related: no extra query


def test_role_permissions_edited_in_the_admin_reach_the_cache(admin_client_logged_in):
    member = MembershipFactory(role=RoleFactory(name="editor", perms=["zones.view_zone"]))
    assert user_context_get(user_id=member.user_id).public["permissions"] == ["zones.view_zone"]  # type: ignore[union-attr]
    response = admin_client_logged_in.post(
        f"/admin/accounts/role/{member.role_id}/change/",
        {"name": "editor", "permissions": [permission("accounts.view_role").pk]},
    )
    assert response.status_code == 302, response.content[:2000]
    assert user_context_get(user_id=member.user_id).public["permissions"] == ["accounts.view_role"]  # type: ignore[union-attr]


def test_membership_deactivated_in_the_admin_reaches_the_cache(admin_client_logged_in):
    member = MembershipFactory()
    assert user_context_get(user_id=member.user_id).public["organization"] is not None  # type: ignore[union-attr]
    response = admin_client_logged_in.post(
        f"/admin/accounts/membership/{member.pk}/change/",
        {"user": member.user_id, "organization": member.organization_id, "role": member.role_id},
    )  # is_active unchecked
    assert response.status_code == 302, response.content[:2000]
    assert user_context_get(user_id=member.user_id).public["organization"] is None  # type: ignore[union-attr]


def test_organization_deleted_in_the_admin_reaches_the_cache(admin_client_logged_in):
    org = OrganizationFactory()
    member = MembershipFactory(organization=org)
    assert user_context_get(user_id=member.user_id).public["organization"] is not None  # type: ignore[union-attr]
    response = admin_client_logged_in.post(f"/admin/accounts/organization/{org.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert user_context_get(user_id=member.user_id).public["organization"] is None  # type: ignore[union-attr]


@pytest.mark.parametrize("model", ["user", "profile", "organization", "role", "membership", "session"])
def test_every_model_has_a_working_admin_list(admin_client_logged_in, model):
    MembershipFactory()
    assert admin_client_logged_in.get(f"/admin/accounts/{model}/").status_code == 200


def _signed_in(user, device: str) -> dict:
    from rest_framework.test import APIClient

    body = {"username": user.username, "password": PASSWORD, "device": device}
    return APIClient().post("/api/auth/login", body, format="json").json()


def test_the_user_page_lists_sessions_without_their_secrets(admin_client_logged_in):
    user = MembershipFactory().user
    phone = _signed_in(user, "Pixel phone")
    page = admin_client_logged_in.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Pixel phone" in html and "live" in html
    from accounts.models import Session

    assert Session.objects.get(pk=phone["session_id"]).refresh_hash not in html
    assert phone["refresh_token"] not in html


def test_sign_out_everywhere_ends_every_session_at_once_and_is_audited(admin_client_logged_in):
    from rest_framework.test import APIClient

    from accounts.models import AccessAuditEntry, Session

    user = MembershipFactory().user
    bodies = [_signed_in(user, f"device {i}") for i in range(2)]
    response = admin_client_logged_in.post(
        "/admin/accounts/user/", {"action": "sign_out_everywhere", "_selected_action": [user.pk]}
    )
    assert response.status_code == 302
    for body in bodies:
        me = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
        assert me.status_code == 401
    assert set(Session.objects.filter(user=user).values_list("end_reason", flat=True)) == {"staff"}
    entry = AccessAuditEntry.objects.get(target=f"user {user.username}")
    assert entry.change == "signed out everywhere (2 sessions)"


def test_staff_cannot_sign_out_a_user_holding_more_than_them():
    from accounts.models import Session

    editor = UserFactory(is_staff=True)
    editor.user_permissions.add(permission("accounts.change_user"), permission("accounts.view_user"))
    root = UserFactory(is_staff=True, is_superuser=True)
    _signed_in(root, "root's laptop")
    client = Client()
    assert client.login(username=editor.username, password=PASSWORD)
    response = client.post("/admin/accounts/user/", {"action": "sign_out_everywhere", "_selected_action": [root.pk]})
    assert response.status_code == 403
    assert Session.objects.get(user=root).ended_at is None


def test_sessions_cannot_be_added_changed_or_deleted_in_the_admin(admin_client_logged_in):
    from accounts.models import Session

    user = MembershipFactory().user
    session_id = _signed_in(user, "tablet")["session_id"]
    assert admin_client_logged_in.get("/admin/accounts/session/").status_code == 200
    assert admin_client_logged_in.get("/admin/accounts/session/add/").status_code == 403
    assert (
        admin_client_logged_in.post(f"/admin/accounts/session/{session_id}/delete/", {"post": "yes"}).status_code == 403
    )
    assert admin_client_logged_in.post(f"/admin/accounts/session/{session_id}/change/", {}).status_code == 403
    assert Session.objects.get(pk=session_id).ended_at is None


def test_the_user_list_shows_and_filters_by_organization_and_role(
    admin_client_logged_in, django_assert_max_num_queries
):
    members = [MembershipFactory() for _ in range(3)]
    target = members[0]
    with django_assert_max_num_queries(12):  # no query per row
        page = admin_client_logged_in.get("/admin/accounts/user/")
    html = page.content.decode()
    for member in members:
        assert member.organization.name in html and member.role.name in html
    filtered = admin_client_logged_in.get(
        f"/admin/accounts/user/?memberships__organization__id__exact={target.organization_id}"
    )
    assert target.user.username in filtered.content.decode()
    assert members[1].user.username not in filtered.content.decode()


def test_memberships_read_as_names_and_can_be_searched(admin_client_logged_in):
    member = MembershipFactory()
    assert str(member) == f"{member.user.username} in {member.organization.name} as {member.role.name}"
    found = admin_client_logged_in.get(f"/admin/accounts/membership/?q={member.organization.name}")
    other = MembershipFactory()
    assert member.user.username in found.content.decode()
    assert (
        other.user.username
        not in admin_client_logged_in.get(f"/admin/accounts/membership/?q={member.organization.name}").content.decode()
    )
