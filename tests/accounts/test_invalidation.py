"""Every write that feeds a context reaches the cache on commit, and only on commit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from accounts import services
from accounts.selectors import user_context_get
from cachemgmt import cache
from tests.factories import (
    MembershipFactory,
    OrganizationFactory,
    RoleFactory,
    UserFactory,
    ZoneAssignmentFactory,
    ZoneFactory,
    permission,
)
from zones.models import ZoneAssignment

pytestmark = pytest.mark.django_db(transaction=True)


def warm(user_id: int) -> dict:
    context = user_context_get(user_id=user_id)
    assert context is not None
    return context.public


def fresh(user_id: int, django_assert_num_queries) -> dict:
    """Read the context and prove it came from the database (the cached one was defeated)."""
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        context = user_context_get(user_id=user_id)
    assert context is not None
    return context.public


@pytest.fixture
def member():
    return MembershipFactory(role=RoleFactory(perms=["zones.view_zone", "accounts.view_organization"]))


def test_role_permission_removal_reaches_cached_context(member, django_assert_num_queries):
    assert "zones.view_zone" in warm(member.user_id)["permissions"]
    member.role.permissions.remove(permission("zones.view_zone"))
    assert fresh(member.user_id, django_assert_num_queries)["permissions"] == ["accounts.view_organization"]


def test_role_permission_change_from_the_permission_side(member, django_assert_num_queries):
    warm(member.user_id)
    permission("zones.view_zone").roles.remove(member.role)
    assert "zones.view_zone" not in fresh(member.user_id, django_assert_num_queries)["permissions"]
    warm(member.user_id)
    permission("zones.change_zone").roles.add(member.role)
    assert "zones.change_zone" in fresh(member.user_id, django_assert_num_queries)["permissions"]


def test_role_permissions_clear_from_both_sides(member, django_assert_num_queries):
    warm(member.user_id)
    permission("accounts.view_organization").roles.clear()
    assert fresh(member.user_id, django_assert_num_queries)["permissions"] == ["zones.view_zone"]
    member.role.permissions.clear()
    assert fresh(member.user_id, django_assert_num_queries)["permissions"] == []


def test_user_permissions_both_directions(member, django_assert_num_queries):
    warm(member.user_id)
    member.user.user_permissions.add(permission("accounts.view_role"))
    assert "accounts.view_role" in fresh(member.user_id, django_assert_num_queries)["permissions"]
    permission("accounts.view_role").user_set.remove(member.user)
    assert "accounts.view_role" not in fresh(member.user_id, django_assert_num_queries)["permissions"]


def test_group_membership_and_group_permissions(member, django_assert_num_queries):
    group = Group.objects.create(name="ops")
    warm(member.user_id)
    member.user.groups.add(group)
    warm(member.user_id)
    group.permissions.add(permission("accounts.change_role"))
    assert "accounts.change_role" in fresh(member.user_id, django_assert_num_queries)["permissions"]
    group.user_set.remove(member.user)
    assert "accounts.change_role" not in fresh(member.user_id, django_assert_num_queries)["permissions"]


def test_group_deletion(member, django_assert_num_queries):
    group = Group.objects.create(name="ops")
    group.permissions.add(permission("accounts.change_role"))
    member.user.groups.add(group)
    assert "accounts.change_role" in warm(member.user_id)["permissions"]
    group.delete()
    assert "accounts.change_role" not in fresh(member.user_id, django_assert_num_queries)["permissions"]


def test_profile_change(member, django_assert_num_queries):
    warm(member.user_id)
    services.profile_update(user_id=member.user_id, display_name="New Name")
    assert fresh(member.user_id, django_assert_num_queries)["user"]["display_name"] == "New Name"


def test_user_fields_and_deactivation(member, django_assert_num_queries):
    warm(member.user_id)
    user = member.user
    user.email = "changed@example.com"
    user.save()
    assert fresh(member.user_id, django_assert_num_queries)["user"]["email"] == "changed@example.com"
    services.user_set_active(user_id=user.pk, is_active=False)
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        context = user_context_get(user_id=user.pk)
    assert context is not None and not context.is_active


def test_user_deletion_yields_no_context(member):
    warm(member.user_id)
    member.user.delete()
    assert user_context_get(user_id=member.user_id) is None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: services.membership_deactivate(user_id=m.user_id), id="service-deactivate"),
        pytest.param(lambda m: m.delete(), id="delete"),
        pytest.param(lambda m: (setattr(m, "is_active", False), m.save()), id="orm-save"),
    ],
)
def test_membership_deactivation(member, change: Callable, django_assert_num_queries):
    assert warm(member.user_id)["organization"] is not None
    change(member)
    public = fresh(member.user_id, django_assert_num_queries)
    assert public["organization"] is None and public["role"] is None and public["permissions"] == []


def test_membership_moved_to_another_user_invalidates_both(member, django_assert_num_queries):
    other = UserFactory()
    warm(member.user_id)
    warm(other.pk)
    member.user = other
    member.save()
    assert fresh(member.user_id, django_assert_num_queries)["organization"] is not None
    from accounts.models import Membership

    membership = Membership.objects.get(pk=member.pk)
    assert membership.user_id == other.pk
    assert user_context_get(user_id=other.pk).public["organization"] is not None  # type: ignore[union-attr]


def test_membership_role_change_through_service(member, django_assert_num_queries):
    warm(member.user_id)
    new_role = RoleFactory(name="boss", perms=["accounts.delete_role"])
    services.membership_set(user_id=member.user_id, organization_id=member.organization_id, role_id=new_role.pk)
    public = fresh(member.user_id, django_assert_num_queries)
    assert public["role"]["name"] == "boss" and public["permissions"] == ["accounts.delete_role"]


def test_role_rename(member, django_assert_num_queries):
    warm(member.user_id)
    member.role.name = "renamed"
    member.role.save()
    assert fresh(member.user_id, django_assert_num_queries)["role"]["name"] == "renamed"


def test_organization_rename_and_deactivation(member, django_assert_num_queries):
    warm(member.user_id)
    org = member.organization
    org.name = "Renamed Org"
    org.save()
    assert fresh(member.user_id, django_assert_num_queries)["organization"]["name"] == "Renamed Org"
    services.organization_set_active(organization_id=org.pk, is_active=False)
    assert fresh(member.user_id, django_assert_num_queries)["organization"] is None


def test_zone_assignment_and_zone_changes(member, django_assert_num_queries):
    warm(member.user_id)
    assignment = ZoneAssignmentFactory(organization=member.organization, zone=ZoneFactory(code="EU-N", name="North"))
    assert fresh(member.user_id, django_assert_num_queries)["zones"] == [{"code": "EU-N", "name": "North"}]
    zone = assignment.zone
    zone.name = "Europe North"
    zone.save()
    assert fresh(member.user_id, django_assert_num_queries)["zones"] == [{"code": "EU-N", "name": "Europe North"}]
    ZoneAssignment.objects.get(pk=assignment.pk).delete()
    assert fresh(member.user_id, django_assert_num_queries)["zones"] == []


def test_bulk_role_move_is_one_cache_operation_for_many_users(django_assert_num_queries, monkeypatch):
    org = OrganizationFactory()
    old, new = RoleFactory(perms=["zones.view_zone"]), RoleFactory(perms=["accounts.view_role"])
    members = [MembershipFactory(organization=org, role=old) for _ in range(25)]
    for m in members:
        warm(m.user_id)
    bumps: list[list[str]] = []
    real_bump = cache.get_store().bump
    monkeypatch.setattr(cache.get_store(), "bump", lambda deps: (bumps.append(list(deps)), real_bump(deps)))

    changed = services.membership_bulk_change_role(organization_id=org.pk, from_role_id=old.pk, to_role_id=new.pk)

    assert changed == 25
    assert bumps == [[cache.dep_organization_key(org.pk)]]
    for m in members:
        assert fresh(m.user_id, django_assert_num_queries)["permissions"] == ["accounts.view_role"]


def test_role_permission_change_costs_one_cache_operation(monkeypatch):
    role = RoleFactory(perms=["zones.view_zone"])
    members = [MembershipFactory(role=role) for _ in range(30)]
    for m in members:
        warm(m.user_id)
    bumps: list[list[str]] = []
    real_bump = cache.get_store().bump
    monkeypatch.setattr(cache.get_store(), "bump", lambda deps: (bumps.append(list(deps)), real_bump(deps)))

    role.permissions.remove(permission("zones.view_zone"))

    assert bumps == [[cache.dep_role_key(role.pk)]]
    assert all(user_context_get(user_id=m.user_id).public["permissions"] == [] for m in members)  # type: ignore[union-attr]


def test_rolled_back_write_invalidates_nothing_and_leaves_no_stale_entry(
    member, django_assert_num_queries, monkeypatch
):
    before = warm(member.user_id)
    bumps: list[list[str]] = []
    real_bump = cache.get_store().bump
    monkeypatch.setattr(cache.get_store(), "bump", lambda deps: (bumps.append(list(deps)), real_bump(deps)))

    with pytest.raises(RuntimeError), transaction.atomic():
        member.role.permissions.clear()
        # A read inside the transaction sees the uncommitted change but must not cache it.
        inside = user_context_get(user_id=member.user_id)
        assert inside is not None and inside.public["permissions"] == []
        raise RuntimeError("roll back")

    assert bumps == []
    with django_assert_num_queries(0):
        after = user_context_get(user_id=member.user_id)
    assert after is not None and after.public == before


def test_fill_that_read_before_a_commit_is_not_stored(member, django_assert_num_queries):
    """A fill that read the database before a concurrent commit cannot store over it."""
    from accounts.selectors import NAMESPACE, context_deps, context_entry_ident, user_context_load

    miss = cache.entry_get(NAMESPACE, context_entry_ident(member.user_id))
    assert isinstance(miss, cache.Miss)
    stale = user_context_load(user_id=member.user_id)  # the slow filler reads ...
    member.role.permissions.clear()  # ... a writer commits and invalidates ...
    assert stale is not None
    stored = cache.entry_put(  # ... then the filler tries to store what it read.
        NAMESPACE,
        context_entry_ident(member.user_id),
        miss=miss,
        deps=context_deps(stale),
        payload=stale.to_payload(),
        ttl=60,
    )
    assert stored is False
    assert fresh(member.user_id, django_assert_num_queries)["permissions"] == []


def test_invalidation_between_fill_and_read_defeats_stored_entry(member, django_assert_num_queries):
    from accounts.selectors import NAMESPACE, context_deps, context_entry_ident, user_context_load

    miss = cache.entry_get(NAMESPACE, context_entry_ident(member.user_id))
    stale = user_context_load(user_id=member.user_id)
    assert isinstance(miss, cache.Miss) and stale is not None
    assert cache.entry_put(
        NAMESPACE,
        context_entry_ident(member.user_id),
        miss=miss,
        deps=context_deps(stale),
        payload=stale.to_payload(),
        ttl=60,
    )
    services.context_invalidate(role_ids=[member.role_id])
    assert isinstance(cache.entry_get(NAMESPACE, context_entry_ident(member.user_id)), cache.Miss)


def test_namespace_clear_defeats_every_context(member, django_assert_num_queries):
    others = [MembershipFactory() for _ in range(3)]
    for m in [member, *others]:
        warm(m.user_id)
    cache.namespace_clear("user_context")
    for m in [member, *others]:
        fresh(m.user_id, django_assert_num_queries)


def test_password_change_bumps_token_version(member):
    before = warm(member.user_id)
    version = user_context_get(user_id=member.user_id).token_version  # type: ignore[union-attr]
    services.user_set_password(user_id=member.user_id, password="another secret 123")
    after = user_context_get(user_id=member.user_id)
    assert after is not None and after.token_version == version + 1
    assert after.public == before


def test_reactivating_an_inactive_organization_reaches_its_members(django_assert_num_queries):
    """Found by the property test: a member of an inactive organization still depends on it."""
    org = OrganizationFactory(is_active=False)
    member = MembershipFactory(organization=org, role=RoleFactory(perms=["zones.view_zone"]))
    assert warm(member.user_id)["organization"] is None
    services.organization_set_active(organization_id=org.pk, is_active=True)
    public = fresh(member.user_id, django_assert_num_queries)
    assert public["organization"]["id"] == org.pk and public["permissions"] == ["zones.view_zone"]
    role = member.role
    services.organization_set_active(organization_id=org.pk, is_active=False)
    assert fresh(member.user_id, django_assert_num_queries)["permissions"] == []
    role.permissions.add(permission("accounts.view_role"))  # while the organization is inactive
    services.organization_set_active(organization_id=org.pk, is_active=True)
    assert fresh(member.user_id, django_assert_num_queries)["permissions"] == ["accounts.view_role", "zones.view_zone"]
