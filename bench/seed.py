"""Benchmark data: ``python -m bench.seed OUT_DIR --users N --token-users T ...`` (Django settings from env).

Writes into OUT_DIR: ``tokens-<kind>.txt`` (one Authorization header value a line),
``floor.json`` (a median-sized context, the floor's payload) and ``meta.json``.

Bulk users share one password hash computed once (seeding stays fast whatever the count);
``benchlogin`` (and ``benchlogin1`` .. ``benchlogin7``, for concurrent logins) are created through
the project's own service, so their passwords are hashed with the production hasher, and login
latency is measured on them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import secrets
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import django

from bench.pgstats import FLUSH_SQL

LOGIN_USERNAME = "benchlogin"
# Users logging in at once in the concurrent login pass (one each: no per-user limit is shared).
LOGIN_CONCURRENCY = 8


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_peers")
    django.setup()


def seed(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Permission
    from django.db import connection, transaction
    from django.utils import timezone
    from knox.models import AuthToken as KnoxToken
    from rest_framework.authtoken.models import Token
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.demo import ORGANIZATIONS, ROLES
    from accounts.models import Membership, Organization, Profile, Role, Session, User
    from accounts.selectors import user_context_load
    from accounts.services import user_create
    from accounts.tokens import token_issue
    from zones.models import Zone, ZoneAssignment, ZoneSyncRun

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    login_password = secrets.token_urlsafe(12)

    with transaction.atomic():
        orgs = [Organization.objects.create(slug=slug, name=name) for slug, name in ORGANIZATIONS]
        roles = []
        for name, codes in ROLES.items():
            role = Role.objects.create(name=name)
            perms = [
                Permission.objects.get(content_type__app_label=code.split(".", 1)[0], codename=code.split(".", 1)[1])
                for code in codes
            ]
            role.permissions.set(perms)
            roles.append(role)
        by_slug = {org.slug: org for org in orgs}
        zones: dict[str, Zone] = {}
        assignments = []
        fixture = Path(settings.BASE_DIR) / "zones" / "fixtures" / "zone_mappings.csv"
        with fixture.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["organization_slug"] not in by_slug:
                    continue
                zone = zones.get(row["zone_code"])
                if zone is None:
                    zone = zones[row["zone_code"]] = Zone.objects.create(code=row["zone_code"], name=row["zone_name"])
                assignments.append(ZoneAssignment(organization=by_slug[row["organization_slug"]], zone=zone))
        ZoneAssignment.objects.bulk_create(assignments)
        now = timezone.now()
        ZoneSyncRun.objects.create(
            started_at=now, finished_at=now, source="fixture", status="ok", rows=len(assignments)
        )

        shared_hash = make_password(secrets.token_urlsafe(12))  # computed once, for every bulk user
        users = User.objects.bulk_create(
            [
                User(username=f"bench{i:07d}", email=f"bench{i}@example.com", password=shared_hash, is_active=True)
                for i in range(1, args.users + 1)
            ],
            batch_size=5000,
        )
        Profile.objects.bulk_create(
            [Profile(user=u, display_name=f"Bench User {i}") for i, u in enumerate(users, 1)], batch_size=5000
        )
        Membership.objects.bulk_create(
            [
                Membership(user=u, organization=orgs[i % len(orgs)], role=roles[i % len(roles)], is_active=True)
                for i, u in enumerate(users)
            ],
            batch_size=5000,
        )
        login_users = [
            user_create(username=name, password=login_password, display_name="Bench Login")
            for name in [LOGIN_USERNAME, *(f"{LOGIN_USERNAME}{i}" for i in range(1, LOGIN_CONCURRENCY))]
        ]
        for login_user in login_users:
            Membership.objects.create(user=login_user, organization=orgs[0], role=roles[0], is_active=True)
        login_user = login_users[0]

    token_users = users[: args.token_users]
    Token.objects.bulk_create([Token(key=Token.generate_key(), user=u) for u in token_users])
    keys = dict(Token.objects.filter(user__in=token_users).values_list("user_id", "key"))
    # Our tokens name a live session: one per token user, made the way a login makes it.
    now = timezone.now()
    token_sessions = Session.objects.bulk_create([_session_row(Session, u.pk, uuid.uuid4(), now) for u in token_users])
    tokens = {
        "ours": [
            f"Bearer {token_issue(user_id=s.user_id, token_version=0, session_id=str(s.pk))[0]}" for s in token_sessions
        ],
        "naive": [f"Token {keys[u.pk]}" for u in token_users],
        "simplejwt": [f"Bearer {AccessToken.for_user(u)}" for u in token_users],
        "knox": [f"Token {KnoxToken.objects.create(user=u)[1]}" for u in token_users],
    }
    for kind, lines in tokens.items():
        (out / f"tokens-{kind}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # The floor returns a context of median size.
    contexts = []
    for u in token_users:
        context = user_context_load(user_id=u.pk)
        assert context is not None
        body = json.dumps(context.public, separators=(",", ":"))
        contexts.append((len(body), u.pk, context.public))
    contexts.sort(key=lambda item: (item[0], item[1]))
    floor_size, floor_user, floor_public = contexts[len(contexts) // 2]
    (out / "floor.json").write_text(json.dumps(floor_public), encoding="utf-8")

    # Cold users: never requested during the load phases. The 1k level takes base users that
    # hold no token; the larger levels take ids the SQL seeding creates (explicit ids).
    spare = [u.pk for u in users[args.token_users :]]
    cold: dict[str, list[list[Any]]] = {}
    # Sessions of cold users: made now for existing users, by grow_users for the others.
    cold_sessions: list[list[Any]] = []
    for level in args.cold_levels:
        if level <= args.users:
            ids = rng.sample(spare, min(args.cold_samples, len(spare)))
        else:
            ids = rng.sample(range(level // 2 + 1, level + 1), args.cold_samples)
        level_tokens = []
        for uid in ids:
            sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            cold_sessions.append([uid, sid])
            level_tokens.append([uid, f"Bearer {token_issue(user_id=uid, token_version=0, session_id=sid)[0]}"])
        cold[str(level)] = level_tokens
    existing = {u.pk for u in users}
    Session.objects.bulk_create(
        [_session_row(Session, uid, uuid.UUID(sid), now) for uid, sid in cold_sessions if uid in existing],
        ignore_conflicts=True,
    )

    meta = {
        "users": args.users,
        "token_users": [u.pk for u in token_users],
        "max_user_id": max(u.pk for u in [*users, *login_users]),
        "login": {
            "username": LOGIN_USERNAME,
            "password": login_password,
            "user_id": login_user.pk,
            "usernames": [u.username for u in login_users],
        },
        "shared_password_hash": shared_hash,
        "organization_ids": [o.pk for o in orgs],
        "role_ids": [r.pk for r in roles],
        "tables": {
            "user": User._meta.db_table,
            "profile": Profile._meta.db_table,
            "membership": Membership._meta.db_table,
            "session": Session._meta.db_table,
        },
        "cold_sessions": cold_sessions,
        "context_bytes": {
            "min": contexts[0][0],
            "median": floor_size,
            "max": contexts[-1][0],
            "mean": round(sum(c[0] for c in contexts) / len(contexts), 1),
        },
        "floor_user_id": floor_user,
        "cold": cold,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    with connection.cursor() as cursor:  # publish this session's statistics before it ends
        cursor.execute(FLUSH_SQL)
    return meta


def _session_row(model: Any, user_id: int, session_id: uuid.UUID, now: Any) -> Any:
    return model(
        id=session_id,
        user_id=user_id,
        device="bench",
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(days=30),
        max_expires_at=now + timedelta(days=90),
        token_version=0,
        refresh_hash=hashlib.sha256(session_id.bytes).hexdigest(),
        refreshed_at=now,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--token-users", type=int, default=200)
    parser.add_argument("--cold-levels", type=int, nargs="*", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--cold-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261128)
    args = parser.parse_args()
    if args.token_users < 100 or args.token_users > args.users:
        parser.error("--token-users must be between 100 and --users")
    _setup()
    meta = seed(args)
    print(json.dumps({"users": meta["users"], "token_users": len(meta["token_users"])}))


if __name__ == "__main__":
    main()
