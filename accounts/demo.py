"""Demo data for ``seed_demo``: organizations, roles, users and one staff admin (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Permission
from django.db import transaction

from accounts.models import Membership, Organization, Profile, Role, User

ORGANIZATIONS = [("acme", "Acme"), ("globex", "Globex"), ("initech", "Initech")]
ROLES = {
    "viewer": ["accounts.view_organization", "zones.view_zone"],
    "manager": [
        "accounts.view_organization",
        "accounts.view_membership",
        "zones.view_zone",
        "zones.view_zoneassignment",
    ],
    "admin": [
        "accounts.view_organization",
        "accounts.change_organization",
        "accounts.view_membership",
        "accounts.change_membership",
        "zones.view_zone",
        "zones.view_zoneassignment",
    ],
}
ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class DemoCredentials:
    username: str
    password: str | None  # None: an existing user, left as it was
    organization: str
    role: str


def _permissions(codes: list[str]) -> list[Permission]:
    perms = []
    for code in codes:
        app_label, codename = code.split(".", 1)
        perms.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return perms


@transaction.atomic
def demo_seed(*, users: int, password: str, reset_existing: bool = False) -> list[DemoCredentials]:
    """Create the demo rows that are missing. An existing user, organization or role of a demo
    name is left as it is (password, status, membership, grants) unless ``reset_existing``:
    then it becomes the demo one again, users with ``password``."""
    organizations = []
    for slug, name in ORGANIZATIONS:
        if reset_existing:
            organization = Organization.objects.update_or_create(slug=slug, defaults={"name": name, "is_active": True})[
                0
            ]
        else:  # an existing organization of a demo slug keeps its name and status
            organization = Organization.objects.get_or_create(slug=slug, defaults={"name": name})[0]
        organizations.append(organization)
    roles = {}
    for name, codes in ROLES.items():
        role, created = Role.objects.get_or_create(name=name)
        if created or reset_existing:  # an existing role keeps the grants someone gave it
            role.permissions.set(_permissions(codes))
        roles[name] = role
    credentials = []
    role_names = list(ROLES)
    specs = [(ADMIN_USERNAME, True, organizations[0], roles["admin"])]
    for index in range(users):
        specs.append(
            (
                f"user{index + 1}",
                False,
                organizations[index % len(organizations)],
                roles[role_names[index % len(role_names)]],
            )
        )
    for username, staff, organization, role in specs:
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        if not created and not reset_existing:
            credentials.append(DemoCredentials(username, None, organization.slug, role.name))
            continue
        user.email = f"{username}@example.com"
        user.is_staff = staff
        user.is_superuser = staff
        user.is_active = True
        user.set_password(password)
        user.save()
        Profile.objects.update_or_create(user=user, defaults={"display_name": username.title()})
        Membership.objects.filter(user=user, is_active=True).exclude(organization=organization).update(is_active=False)
        Membership.objects.update_or_create(
            user=user, organization=organization, defaults={"role": role, "is_active": True}
        )
        credentials.append(DemoCredentials(username, password, organization.slug, role.name))
    return credentials
