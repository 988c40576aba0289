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
