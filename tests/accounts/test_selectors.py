"""The user context: its content per the contract and its query budget on each database."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from accounts.selectors import user_context_get, user_context_load
from tests.factories import (
    MembershipFactory,
    OrganizationFactory,
    RoleFactory,
    UserFactory,
    ZoneAssignmentFactory,
    ZoneFactory,
    permission,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_context_has_contract_shape_and_effective_permissions():
    membership = MembershipFactory(role=RoleFactory(name="manager", perms=["zones.view_zone"]))
    user = membership.user
    user.user_permissions.add(permission("accounts.view_organization"))
    group = Group.objects.create(name="auditors")
    group.permissions.add(permission("accounts.view_membership"))
    user.groups.add(group)
    ZoneAssignmentFactory(organization=membership.organization, zone=ZoneFactory(code="US-E", name="US East"))
    ZoneAssignmentFactory(organization=membership.organization, zone=ZoneFactory(code="EU-N", name="Europe North"))
    ZoneAssignmentFactory(zone=ZoneFactory(code="XX", name="Other org"))

    context = user_context_get(user_id=user.pk)

    assert context is not None
    public = context.public
    assert set(public) == {"user", "organization", "role", "permissions", "zones", "zones_status", "version"}
    assert public["user"] == {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "display_name": user.profile.display_name,
        "is_staff": False,
        "is_superuser": False,
    }
    assert public["organization"] == {
        "id": membership.organization.pk,
        "slug": membership.organization.slug,
        "name": membership.organization.name,
    }
    assert public["role"] == {"id": membership.role.pk, "name": "manager"}
    assert public["permissions"] == ["accounts.view_membership", "accounts.view_organization", "zones.view_zone"]
    assert public["zones"] == [{"code": "EU-N", "name": "Europe North"}, {"code": "US-E", "name": "US East"}]
    assert public["zones_status"] == "pending"  # no sync has run yet
    assert isinstance(public["version"], str) and public["version"]


def test_no_membership_means_null_organization_and_role():
    user = UserFactory()
    context = user_context_get(user_id=user.pk)
    assert context is not None
    assert context.public["organization"] is None
    assert context.public["role"] is None
    assert context.public["permissions"] == []
    assert context.public["zones"] == []


def test_inactive_organization_hides_organization_role_and_role_permissions():
    membership = MembershipFactory(
        organization=OrganizationFactory(is_active=False), role=RoleFactory(perms=["zones.view_zone"])
    )
    context = user_context_get(user_id=membership.user_id)
    assert context is not None
    assert context.public["organization"] is None
    assert context.public["role"] is None
    assert context.public["permissions"] == []


def test_inactive_membership_is_ignored():
    membership = MembershipFactory(is_active=False)
    context = user_context_get(user_id=membership.user_id)
    assert context is not None and context.public["organization"] is None


def test_active_superuser_has_every_permission():
    user = UserFactory(is_superuser=True, is_staff=True)
    context = user_context_get(user_id=user.pk)
    assert context is not None
    from django.contrib.auth.models import Permission

    assert len(context.public["permissions"]) == Permission.objects.count()
    assert context.public["permissions"] == sorted(context.public["permissions"])


def test_unknown_user_has_no_context_and_the_absence_is_cached(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert user_context_get(user_id=987654) is None
    with django_assert_num_queries(0):
        assert user_context_get(user_id=987654) is None


def test_version_changes_when_content_changes():
    membership = MembershipFactory()
    before = user_context_get(user_id=membership.user_id)
    membership.user.profile.display_name = "Renamed"
    membership.user.profile.save()
    after = user_context_get(user_id=membership.user_id)
    assert before is not None and after is not None
    assert before.version != after.version
    assert user_context_load(user_id=membership.user_id).version == after.version  # type: ignore[union-attr]


@pytest.mark.services
def test_cold_context_is_one_statement_on_postgresql(postgres, django_assert_num_queries):
    membership = MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))
    ZoneAssignmentFactory(organization=membership.organization)
    with django_assert_num_queries(1):
        context = user_context_get(user_id=membership.user_id)
    assert context is not None and context.public["zones"]


def test_portable_path_is_at_most_two_queries(django_assert_max_num_queries):
    """The ORM path used on SQLite (and any non-PostgreSQL database) stays within two queries."""
    from accounts import selectors

    membership = MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))
    ZoneAssignmentFactory(organization=membership.organization)
    with django_assert_max_num_queries(2):
        context = selectors._load_portable(membership.user_id)
    assert context is not None and context.public["permissions"] == ["zones.view_zone"]


def test_loader_is_chosen_by_database(django_assert_num_queries):
    membership = MembershipFactory()
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        assert user_context_load(user_id=membership.user_id) is not None


def test_warm_context_costs_no_query(django_assert_num_queries):
    membership = MembershipFactory()
    user_context_get(user_id=membership.user_id)
    with django_assert_num_queries(0):
        context = user_context_get(user_id=membership.user_id)
    assert context is not None and context.user_id == membership.user_id


def test_portable_and_postgresql_paths_agree():
    """Both loaders build the same context from the same rows (whichever database runs)."""
    from accounts import selectors

    membership = MembershipFactory(role=RoleFactory(perms=["zones.view_zone", "accounts.view_role"]))
    ZoneAssignmentFactory(organization=membership.organization)
    portable = selectors._load_portable(membership.user_id)
    native = user_context_load(user_id=membership.user_id)
    assert portable is not None and native is not None
    assert portable.public == native.public
    assert portable.to_payload() == native.to_payload()


def test_a_cached_payload_is_decoded_once_per_process(monkeypatch):
    from accounts import context as context_module

    membership = MembershipFactory()
    payload = user_context_load(user_id=membership.user_id).to_payload()  # type: ignore[union-attr]
    decoded: list[bytes] = []
    real = context_module.UserContext.from_payload
    monkeypatch.setattr(
        context_module.UserContext, "from_payload", classmethod(lambda cls, p: (decoded.append(p), real(p))[1])
    )
    monkeypatch.setattr(context_module, "_decoded", {})

    first = context_module.context_from_payload(payload)
    again = context_module.context_from_payload(bytes(bytearray(payload)))  # equal bytes, another object

    assert again is first and decoded == [payload]
    assert first == real(payload)


def test_decoded_contexts_are_bounded(monkeypatch):
    from accounts import context as context_module

    monkeypatch.setattr(context_module, "_decoded", {})
    monkeypatch.setattr(context_module, "_DECODED_MAX", 3)
    payloads = [user_context_load(user_id=MembershipFactory().user_id).to_payload() for _ in range(5)]  # type: ignore[union-attr]
    for payload in payloads:
        context_module.context_from_payload(payload)
    assert list(context_module._decoded) == payloads[2:]


def test_pending_invalidations_are_seen_inside_the_transaction_only():
    from django.db import transaction

    from cachemgmt import cache

    membership = MembershipFactory()
    with transaction.atomic():
        assert not cache.invalidations_pending()
        membership.role.permissions.clear()
        assert cache.invalidations_pending()
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back
            membership.user.profile.save()
            raise RuntimeError
        assert cache.invalidations_pending()  # the outer change is still pending
    assert not cache.invalidations_pending()
    assert cache._maybe_pending.value is False  # later reads skip the connection's list
