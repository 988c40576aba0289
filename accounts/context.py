"""The immutable user context and its cached form."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ZONES_READY = "ready"
ZONES_STALE = "stale"
ZONES_PENDING = "pending"


@dataclass(frozen=True, slots=True)
class UserContext:
    """Who the user is, what they may do and where they belong, as served by ``GET /api/me``.

    ``public`` is the contract's JSON (``version`` included); the other fields are what
    authentication needs without touching the database.
    """

    user_id: int
    is_active: bool
    is_staff: bool
    is_superuser: bool
    username: str
    token_version: int
    # Ids of the user's live sessions: an access token naming another one is refused.
    session_ids: frozenset[str]
    # The active membership's organization and role, even when the organization is inactive
    # (then hidden from ``public``): the context depends on them either way.
    organization_id: int | None
    role_id: int | None
    permissions: frozenset[str]
    zones_stale_after: float | None
    public: dict[str, Any]
    # ``public`` rendered as JSON, once per context object (``public_json``).
    _rendered: list[bytes] = field(default_factory=list, compare=False, repr=False)

    def public_json(self) -> bytes:
        """``public`` exactly as DRF's JSON renderer writes it, rendered the first time only.

        A context is immutable and one object serves every request of its user in this
        process (``context_from_payload``), so its body is too.
        """
        if not self._rendered:
            from rest_framework.renderers import JSONRenderer

            self._rendered.append(JSONRenderer().render(self.public))
        return self._rendered[0]

    @property
    def version(self) -> str:
        return str(self.public["version"])

    def zones_overdue(self, now: float | None = None) -> bool:
        return (
            self.zones_stale_after is not None and (now if now is not None else time.time()) >= self.zones_stale_after
        )

    def to_payload(self) -> bytes:
        auth = [
            self.user_id,
            self.is_active,
            self.token_version,
            sorted(self.session_ids),
            self.organization_id,
            self.role_id,
            self.zones_stale_after,
        ]
        return json.dumps({"p": self.public, "s": auth}, separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> UserContext:
        data = json.loads(payload)
        public = data["p"]
        # "s": the auth part since contexts carry session ids (older entries are refused here).
        user_id, is_active, token_version, sessions, org_id, role_id, stale_after = data["s"]
        user = public["user"]
        return cls(
            user_id=user_id,
            is_active=is_active,
            is_staff=user["is_staff"],
            is_superuser=user["is_superuser"],
            username=user["username"],
            token_version=token_version,
            session_ids=frozenset(sessions),
            organization_id=org_id,
            role_id=role_id,
            permissions=frozenset(public["permissions"]),
            zones_stale_after=stale_after,
            public=public,
        )


# Decoded contexts by their exact cached bytes: a warm request reuses the object instead of
# parsing JSON again. Keyed by content (which names the user), so it can never disagree with
# the cache nor hand one user's context to another; bounded. The objects are shared by every
# request of the process: nothing may mutate a context or its ``public`` data.
_DECODED_MAX = 10_000
_decoded: dict[bytes, UserContext] = {}
_decoded_lock = threading.Lock()


def context_from_payload(payload: bytes) -> UserContext:
    """``UserContext.from_payload``, parsed once per distinct payload in this process."""
    context = _decoded.get(payload)
    if context is None:
        context = UserContext.from_payload(payload)
        with _decoded_lock:
            if len(_decoded) >= _DECODED_MAX:
                _decoded.pop(next(iter(_decoded)), None)
            _decoded[payload] = context
    return context


def build_context(
    *,
    user: dict[str, Any],
    is_active: bool,
    token_version: int,
    session_ids: list[str],
    organization: dict[str, Any] | None,
    role: dict[str, Any] | None,
    membership_organization_id: int | None,
    membership_role_id: int | None,
    permissions: list[str],
    zones: list[tuple[str, str]],
    zones_status: str,
    zones_stale_after: float | None,
) -> UserContext:
    """Assemble a context from loaded rows; ``version`` is a digest of everything public.

    ``organization`` and ``role`` are None unless the active membership's organization is
    active; ``membership_*`` name that membership's organization and role regardless.
    """
    public: dict[str, Any] = {
        "user": user,
        "organization": organization,
        "role": role if organization is not None else None,
        "permissions": sorted(set(permissions)),
        "zones": [{"code": code, "name": name} for code, name in sorted(zones)],
        "zones_status": zones_status,
    }
    digest = hashlib.blake2b(
        json.dumps(public, sort_keys=True, separators=(",", ":")).encode(), digest_size=10
    ).hexdigest()
    public["version"] = digest
    return UserContext(
        user_id=int(user["id"]),
        is_active=is_active,
        is_staff=bool(user["is_staff"]),
        is_superuser=bool(user["is_superuser"]),
        username=str(user["username"]),
        token_version=token_version,
        session_ids=frozenset(str(sid) for sid in session_ids),
        organization_id=membership_organization_id,
        role_id=membership_role_id,
        permissions=frozenset(public["permissions"]),
        zones_stale_after=zones_stale_after,
        public=public,
    )
