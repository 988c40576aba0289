"""Peer designs of ``GET /api/me`` (benchmark only): the project's JSON, built each design's way.

Every peer ends in the project's own ``build_context`` so that, for the same user, every mode
returns byte-identical bodies (the run checks it); only the way the rows are fetched differs.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import connection
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.functions import Concat
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.context import build_context
from accounts.models import Membership, Profile, Role, User
from bench.pgstats import FLUSH_SQL
from zones.models import Zone, ZoneSyncRun

# --------------------------------------------------------------------------------------
# floor: no authentication, no I/O, a fixed payload of the size of a real context
# --------------------------------------------------------------------------------------


def _floor_payload() -> dict[str, Any]:
    path = os.environ.get("BENCH_FLOOR_PAYLOAD", "")
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        return dict(json.load(handle))


FLOOR_PAYLOAD = _floor_payload() if getattr(settings, "BENCH_MODE", "") == "floor" else {}


class FloorApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(FLOOR_PAYLOAD)


_BUILD_CONTEXT_PARAMS = frozenset(inspect.signature(build_context).parameters)

# --------------------------------------------------------------------------------------
# Shared: the zones status rule of the contract (ready / stale / pending)
# --------------------------------------------------------------------------------------


def _zones_status(last_ok: Any, last_status: str | None) -> str:
    from zones.conf import zones_settings

    if last_ok is None:
        return "pending"
    if last_status == "failed" or time.time() >= last_ok.timestamp() + 1.5 * int(zones_settings.SYNC_INTERVAL):
        return "stale"
    return "ready"


def _last_sync_status() -> str:
    """The zones status from the last finished sync, one plain ORM statement."""
    last = (
        ZoneSyncRun.objects.exclude(status="running")
        .order_by("-started_at")
        .values_list("status", "finished_at")
        .first()
    )
    last_status, last_ok = (last[0], last[1] if last[0] == "ok" else None) if last else (None, None)
    return _zones_status(last_ok, last_status)


def _public(
    *,
    user: Any,
    display_name: str | None,
    organization: dict[str, Any] | None,
    role: dict[str, Any] | None,
    permissions: list[str],
    zones: list[tuple[str, str]],
    zones_status: str,
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if "membership_organization_id" in _BUILD_CONTEXT_PARAMS:  # the project's newer signature
        extra["membership_organization_id"] = None if organization is None else organization["id"]
        extra["membership_role_id"] = None if role is None else role["id"]
    context = build_context(
        **extra,
        user={
            "id": user.pk,
            "username": user.username,
            "email": user.email,
            "display_name": display_name or user.username,
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
        },
        is_active=user.is_active,
        token_version=getattr(user, "token_version", 0),
        session_ids=[],
        organization=organization,
        role=role,
        permissions=permissions,
        zones=zones if organization is not None else [],
        zones_status=zones_status,
        zones_stale_after=None,
    )
    return context.public


# --------------------------------------------------------------------------------------
# naive: stock TokenAuthentication, then the context with plain ORM calls (the "before")
# --------------------------------------------------------------------------------------


def naive_context(user: Any) -> dict[str, Any]:
    """Statements: profile, membership+organization, role, permissions, zones, zone sync (6),
    after the authentication's token+user query: 7 per request."""
    profile = Profile.objects.filter(user_id=user.pk).first()
    membership = (
        Membership.objects.select_related("organization")
        .filter(user_id=user.pk, is_active=True, organization__is_active=True)
        .first()
    )
    organization = role = None
    permissions: list[str] = []
    zones: list[tuple[str, str]] = []
    if membership is not None:
        org = membership.organization
        organization = {"id": org.pk, "slug": org.slug, "name": org.name}
        role_row = Role.objects.get(pk=membership.role_id)
        role = {"id": role_row.pk, "name": role_row.name}
        permissions = [
            f"{app}.{code}" for app, code in role_row.permissions.values_list("content_type__app_label", "codename")
        ]
        zones = list(Zone.objects.filter(assignments__organization_id=org.pk).values_list("code", "name"))
    return _public(
        user=user,
        display_name=profile.display_name if profile else None,
        organization=organization,
        role=role,
        permissions=permissions,
        zones=zones,
        zones_status=_last_sync_status(),
    )


class NaiveMeApi(APIView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response(naive_context(request.user))


class NaiveLoginApi(APIView):
    """The "before" login: Django's backend (production hasher), a DRF token, the naive context."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        from rest_framework.authtoken.models import Token

        user = authenticate(
            request=None, username=str(request.data.get("username", "")), password=str(request.data.get("password", ""))
        )
        if user is None:
            raise AuthenticationFailed("Invalid username or password.")
        token, _ = Token.objects.get_or_create(user=user)
        User.objects.filter(pk=user.pk).update(last_login=timezone.now())
        return Response({"access_token": token.key, "token_type": "Token", "context": naive_context(user)})


# --------------------------------------------------------------------------------------
# simplejwt and knox, as their users run them: the stock authentication class (its own user
# query), then the context built the way a DRF app typically does
# --------------------------------------------------------------------------------------


def typical_context(user: Any) -> dict[str, Any]:
    """``select_related`` / ``prefetch_related``, no hand-tuned SQL. Statements: the membership
    with user, profile, organization and role joined (1), the role's permissions with their
    content types (1), the organization's zone assignments with their zones (1), the last zone
    sync (1): 4, after the authentication's own."""
    from django.contrib.auth.models import Permission
    from django.db.models import Prefetch

    from zones.models import ZoneAssignment

    membership = (
        Membership.objects.select_related("user__profile", "organization", "role")
        .prefetch_related(
            Prefetch("role__permissions", queryset=Permission.objects.select_related("content_type")),
            Prefetch("organization__zone_assignments", queryset=ZoneAssignment.objects.select_related("zone")),
        )
        .filter(user_id=user.pk, is_active=True, organization__is_active=True)
        .first()
    )
    profile = getattr(user, "profile", None) if membership is None else getattr(membership.user, "profile", None)
    organization = role = None
    permissions: list[str] = []
    zones: list[tuple[str, str]] = []
    if membership is not None:
        org, role_row = membership.organization, membership.role
        organization = {"id": org.pk, "slug": org.slug, "name": org.name}
        role = {"id": role_row.pk, "name": role_row.name}
        permissions = [f"{p.content_type.app_label}.{p.codename}" for p in role_row.permissions.all()]
        zones = [(a.zone.code, a.zone.name) for a in org.zone_assignments.all()]
    return _public(
        user=user,
        display_name=profile.display_name if profile else None,
        organization=organization,
        role=role,
        permissions=permissions,
        zones=zones,
        zones_status=_last_sync_status(),
    )


class TypicalMeApi(APIView):
    """``/api/me`` of a typical DRF app: the configured authentication class, then ``typical_context``."""

    permission_classes = [IsAuthenticated]
    authenticator: Any = None

    def get_authenticators(self) -> list[Any]:
        return [self.authenticator()]

    def get(self, request: Request) -> Response:
        return Response(typical_context(request.user))


def _simplejwt_authentication() -> Any:
    from rest_framework_simplejwt.authentication import JWTAuthentication

    return JWTAuthentication


def _knox_authentication() -> Any:
    from knox.auth import TokenAuthentication as KnoxTokenAuthentication

    return KnoxTokenAuthentication


# --------------------------------------------------------------------------------------
# simplejwt-tuned: a signed access token, then ONE hand-written query building the context
# --------------------------------------------------------------------------------------


def jwt_context_query(user_id: int) -> Any:
    """One statement: the active membership with user, profile, organization and role joined,
    the role's permissions and the organization's zones as arrays, the zone sync state."""
    from django.contrib.postgres.expressions import ArraySubquery

    perms = (
        Role.permissions.through.objects.filter(role_id=OuterRef("role_id"))
        .annotate(code=Concat(F("permission__content_type__app_label"), Value("."), F("permission__codename")))
        .values("code")
    )
    zones = Zone.objects.filter(assignments__organization_id=OuterRef("organization_id")).order_by("code")
    return (
        Membership.objects.select_related("user__profile", "organization", "role")
        .filter(user_id=user_id, is_active=True, organization__is_active=True)
        .annotate(
            perm_codes=ArraySubquery(perms),
            zone_codes=ArraySubquery(zones.values("code")),
            zone_names=ArraySubquery(zones.values("name")),
            sync_last_ok=Subquery(
                ZoneSyncRun.objects.filter(status="ok").order_by("-finished_at").values("finished_at")[:1]
            ),
            sync_last_status=Subquery(
                ZoneSyncRun.objects.exclude(status="running").order_by("-started_at").values("status")[:1]
            ),
        )
        .first()
    )


def one_query_context(user_id: int) -> tuple[Any, dict[str, Any]]:
    """The user and their public context from ``jwt_context_query`` (a second query only for a
    user without an active membership, which the benchmark's users all have)."""
    membership = jwt_context_query(user_id)
    if membership is None:
        user = User.objects.select_related("profile").filter(pk=user_id).first()
        if user is None or not user.is_active:
            raise AuthenticationFailed("User not found or inactive.")
        return user, _public(
            user=user,
            display_name=getattr(getattr(user, "profile", None), "display_name", None),
            organization=None,
            role=None,
            permissions=[],
            zones=[],
            zones_status="pending",
        )
    user = membership.user
    if not user.is_active:
        raise AuthenticationFailed("User is inactive.")
    org, role = membership.organization, membership.role
    profile = getattr(user, "profile", None)
    return user, _public(
        user=user,
        display_name=profile.display_name if profile else None,
        organization={"id": org.pk, "slug": org.slug, "name": org.name},
        role={"id": role.pk, "name": role.name},
        permissions=list(membership.perm_codes),
        zones=list(zip(membership.zone_codes, membership.zone_names, strict=True)),
        zones_status=_zones_status(membership.sync_last_ok, membership.sync_last_status),
    )


def _jwt_authentication_class() -> Any:
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.settings import api_settings

    class OneQueryJWTAuthentication(JWTAuthentication):
        def get_user(self, validated_token: Any) -> Any:
            user, context = one_query_context(int(validated_token[api_settings.USER_ID_CLAIM]))
            user.bench_context = context
            return user

    return OneQueryJWTAuthentication


class JwtMeApi(APIView):
    permission_classes = [IsAuthenticated]

    def get_authenticators(self) -> list[Any]:
        return [_JWT_AUTH()]

    def get(self, request: Request) -> Response:
        return Response(request.user.bench_context)


_JWT_AUTH: Any = _jwt_authentication_class() if getattr(settings, "BENCH_MODE", "") == "simplejwt-tuned" else None


# --------------------------------------------------------------------------------------
# seed-ttl: the design this project grew from, on the same models: the signed token decoded,
# the context cached in-process for 15 minutes by user id (one query on a miss), no invalidation
# --------------------------------------------------------------------------------------

SEED_TTL_SECONDS = 15 * 60


class SeedTtlCache:
    """The seed's thread-safe in-memory cache: user id -> (expiry, context), a 15-minute TTL."""

    def __init__(self, ttl: float = SEED_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[int, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, user_id: int) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[user_id]
                return None
            return entry[1]

    def set(self, user_id: int, context: dict[str, Any]) -> None:
        with self._lock:
            self._entries[user_id] = (time.monotonic() + self.ttl, context)


SEED_CACHE = SeedTtlCache()


class SeedUser:
    """What the seed's auth dependency returns: the cached context, authenticated."""

    is_authenticated = True

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context
        self.pk = context["user"]["id"]


class SeedTtlAuthentication:
    """The signed token decoded (HS256, PyJWT), then the context from ``SEED_CACHE``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[SeedUser, str] | None:
        import jwt

        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme != self.keyword or not token:
            return None
        try:
            claims = jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("Invalid token.") from exc
        user_id = int(claims["user_id"])
        context = SEED_CACHE.get(user_id)
        if context is None:
            _, context = one_query_context(user_id)
            SEED_CACHE.set(user_id, context)
        return SeedUser(context), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class SeedTtlMeApi(APIView):
    authentication_classes = [SeedTtlAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response(request.user.context)


# --------------------------------------------------------------------------------------
# Measurement helper: flush every pooled PostgreSQL backend's pending statistics
# --------------------------------------------------------------------------------------


def pgflush(request: HttpRequest) -> JsonResponse:
    """Make every pooled connection of this worker publish its PostgreSQL statistics now.

    Answers this worker's pid, the statements that took (the benchmark subtracts them) and the
    requests gunicorn handed to this worker so far, by path.
    """
    from bench.gunicorn_hooks import REQUESTS

    pool = getattr(connection, "pool", None)
    ran = 0
    if pool is not None:
        if pool.closed:
            # Open it now, before any measurement: connections opened later would run their
            # start-up transactions inside a measured window.
            pool.open(wait=True, timeout=30)
        held = []
        try:
            size = int(pool.get_stats().get("pool_size", 0))
            for _ in range(size):
                held.append(pool.getconn(timeout=2))
            for conn in held:
                conn.execute(FLUSH_SQL)
                if not conn.autocommit:
                    conn.commit()
                ran += 1
        finally:
            for conn in held:
                pool.putconn(conn)
    return JsonResponse({"pid": os.getpid(), "statements": ran, "requests": REQUESTS})


def warm(request: HttpRequest) -> JsonResponse:
    """Replay ``GET /api/me`` in-process for every token of the mode (``BENCH_TOKENS_FILE``).

    Fills this worker's caches (the in-process one too) through the mode's own request path,
    before the load phases; the benchmark calls it on every worker.
    """
    from django.test import Client

    path = os.environ.get("BENCH_TOKENS_FILE", "")
    tokens = [line for line in Path(path).read_text(encoding="utf-8").split("\n") if line] if path else []
    client = Client(HTTP_HOST="127.0.0.1")
    statuses: dict[int, int] = {}
    for header in tokens:
        status = client.get("/api/me", HTTP_AUTHORIZATION=header).status_code
        statuses[status] = statuses.get(status, 0) + 1
    return JsonResponse({"pid": os.getpid(), "statuses": statuses})
