"""The DRF permission class reads permissions from the cached context, never the database."""

from __future__ import annotations

import pytest
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from accounts.authentication import ContextTokenAuthentication, ContextUser
from accounts.permissions import HasContextPermissions
from accounts.selectors import user_context_get
from tests.factories import MembershipFactory, RoleFactory

pytestmark = pytest.mark.django_db(transaction=True)


class ZoneReport(APIView):
    authentication_classes = [ContextTokenAuthentication]
    permission_classes = [HasContextPermissions]
    required_permissions = ("zones.view_zone",)

    def get(self, request):
        from rest_framework.response import Response

        return Response({"ok": True})


def test_permission_granted_and_revoked_from_the_context(bearer, django_assert_num_queries):
    member = MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))
    view = ZoneReport.as_view()
    factory = APIRequestFactory()
    headers = bearer(member.user)
    user_context_get(user_id=member.user_id)  # warm
    with django_assert_num_queries(0):
        assert view(factory.get("/report", **headers)).status_code == 200
    member.role.permissions.clear()
    assert view(factory.get("/report", **headers)).status_code == 403
    assert view(factory.get("/report")).status_code == 401


def test_context_user_answers_has_perm_from_the_context():
    member = MembershipFactory(role=RoleFactory(perms=["zones.view_zone"]))
    context = user_context_get(user_id=member.user_id)
    assert context is not None
    user = ContextUser(context)
    assert user.is_authenticated and not user.is_anonymous
    assert user.has_perm("zones.view_zone")
    assert not user.has_perm("zones.delete_zone")
    assert user.has_perms(["zones.view_zone"])
