"""Mixed writers (the ORM with signals, ``update()`` without them, raw SQL) and reads, in random
orders: once the carrier has applied what was recorded, every cached context equals the database."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Profile, Role, User
from accounts.selectors import user_context_get, user_context_load
from cachemgmt import carrier
from cachemgmt.models import DependencyChange
from tests.factories import MembershipFactory, RoleFactory, permission

# A carrier thread beside the test's writes: the embedded test database (in-memory SQLite in
# shared-cache mode) locks whole tables between threads, so these run on PostgreSQL; the SQLite
# topology is covered across processes on a file database (test_freshness.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.services]

WRITERS = ["orm_save", "orm_update", "raw_sql"]
TARGETS = ["display_name", "is_active", "role_permission", "membership"]
steps = st.lists(
    st.tuples(st.sampled_from(WRITERS), st.sampled_from(TARGETS), st.integers(0, 2), st.booleans()),
    min_size=3,
    max_size=15,
)


def settle() -> None:
    newest = DependencyChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
    deadline = time.monotonic() + 5
    while carrier.carrier_status().cursor < newest or not carrier.cache_trusted():
        assert time.monotonic() < deadline, "the carrier did not catch up"
        time.sleep(0.005)


def write(writer: str, target: str, user: User, role: Role, flag: bool, step: int) -> None:
    if target == "display_name":
        name = f"name-{step}"
        if writer == "orm_save":
            profile = Profile.objects.get(user=user)
            profile.display_name = name
            profile.save()
        elif writer == "orm_update":
            Profile.objects.filter(user=user).update(display_name=name)
        else:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE accounts_profile SET display_name = %s WHERE user_id = %s", [name, user.pk])
    elif target == "is_active":
        if writer == "orm_save":
            user.is_active = flag
            user.save()
        elif writer == "orm_update":
            User.objects.filter(pk=user.pk).update(is_active=flag)
        else:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE accounts_user SET is_active = %s WHERE id = %s", [flag, user.pk])
    elif target == "role_permission":
        perm = permission("zones.view_zone")
        through = Role.permissions.through
        if writer == "orm_save":
            role.permissions.add(perm) if flag else role.permissions.remove(perm)
        elif flag:
            through.objects.get_or_create(role_id=role.pk, permission_id=perm.pk)  # ORM rows, no m2m signal
        else:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM accounts_role_permissions WHERE role_id = %s", [role.pk])
    else:
        membership = user.memberships.get()
        if writer == "raw_sql":
            with connection.cursor() as cursor:
                cursor.execute("UPDATE accounts_membership SET is_active = %s WHERE id = %s", [flag, membership.pk])
        else:
            type(membership).objects.filter(pk=membership.pk).update(is_active=flag)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_cached_contexts_equal_the_database_after_any_mix_of_writers(postgres, steps):
    carrier.carrier_enable()
    carrier.carrier_start()
    try:
        members = [MembershipFactory(role=RoleFactory()) for _ in range(3)]
        for number, (writer, target, index, flag) in enumerate(steps):
            member = members[index]
            user = User.objects.get(pk=member.user_id)
            user_context_get(user_id=user.pk)  # cached before the write
            write(writer, target, user, member.role, flag, number)
            settle()
            for other in members:
                cached = user_context_get(user_id=other.user_id)
                fresh = user_context_load(user_id=other.user_id)
                assert cached is not None and fresh is not None
                assert cached.public == fresh.public, (writer, target)
    finally:
        carrier.carrier_stop()
        carrier.carrier_enable(False)
