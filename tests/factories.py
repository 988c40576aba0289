"""factory_boy factories for every model the user context is built from."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Permission

from accounts.models import Membership, Organization, Profile, Role, User
from zones.models import Zone, ZoneAssignment

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password(PASSWORD)
    profile = factory.RelatedFactory("tests.factories.ProfileFactory", factory_related_name="user")


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile
        django_get_or_create = ("user",)

    user = factory.SubFactory(UserFactory, profile=None)
    display_name = factory.LazyAttribute(lambda o: o.user.username.title())


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Role
        django_get_or_create = ("name",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"role-{n}")

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **_: object) -> None:
        if create and extracted:
            self.permissions.set([permission(code) for code in extracted])


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = factory.SubFactory(RoleFactory)
    is_active = True


class ZoneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Zone
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"Z-{n}")
    name = factory.LazyAttribute(lambda o: f"Zone {o.code}")


class ZoneAssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ZoneAssignment

    organization = factory.SubFactory(OrganizationFactory)
    zone = factory.SubFactory(ZoneFactory)


def permission(code: str) -> Permission:
    app_label, codename = code.split(".", 1)
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)
