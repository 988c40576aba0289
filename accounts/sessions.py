"""Writes: sessions (one per signed-in device), their refresh tokens with rotation and reuse detection, and ending them.

A refresh token is random and opaque; only its SHA-256 is stored. Its successor is derived
from it (HMAC with a key derived from ``SECRET_KEY``), so a client that lost the answer to a
refresh and retries within ``REFRESH_REUSE_LEEWAY`` gets the same successor back without the
server ever storing a token. Presenting a retired token later ends the whole session: one of
two holders of that token is not the client it was issued to (RFC 9700, section 4.14.2).

Ending sessions is what revokes access tokens: a cached context lists its user's live
sessions, every end invalidates it on commit (and the change capture carries any other
writer's), so the next request with a token of an ended session is refused everywhere.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.conf import accounts_settings
from accounts.context import UserContext
from accounts.dependencies import context_invalidate
from accounts.models import RetiredRefreshToken, Session
from accounts.selectors import user_context_get
from accounts.tokens import token_issue

logger = logging.getLogger("accounts")

REFRESH_TOKEN_MAX_LENGTH = 128
DEVICE_MAX_LENGTH = 200


class EndReason(enum.StrEnum):
    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    USER = "ended_by_user"
    LIMIT = "session_limit"
    REUSE = "refresh_reused"
    STAFF = "staff"
    INCIDENT = "incident"


class RefreshRefused(Exception):
    """The refresh token is unknown, expired, retired or its session or user ended."""

    code = "refresh_invalid"


class RefreshReused(RefreshRefused):
    """A retired refresh token came back after the leeway: its session is now ended."""

    code = "refresh_reused"


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """What a login or a refresh answers: an access token, a refresh token and the context."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: str
    context: UserContext


# --------------------------------------------------------------------------------------
# Refresh tokens
# --------------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _successor_keys() -> list[bytes]:
    secret_keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [hmac.new(key.encode(), b"accounts.refresh-successor.v1", hashlib.sha256).digest() for key in secret_keys]


def _successor(token: str, key: bytes) -> str:
    digest = hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def device_name(text: str) -> str:
    """A session's device name as stored: printable characters only (a client's own name or a
    User-Agent header, which may carry control characters or undecodable bytes), bounded."""
    cleaned = "".join(ch for ch in text if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    return " ".join(cleaned.split())[:DEVICE_MAX_LENGTH]


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, int((moment - now).total_seconds()))


class SessionGone(Exception):
    """The session ended (or its user was deactivated) between its write and the context read."""


def _issue(session: Session, refresh_token: str, now: datetime) -> IssuedSession:
    """An access token for the session (never outliving it) and the fresh context."""
    context = user_context_get(user_id=session.user_id)
    if context is None or not context.is_active or str(session.id) not in context.session_ids:
        raise SessionGone(str(session.pk))
    access, claims = token_issue(
        user_id=session.user_id,
        token_version=context.token_version,
        session_id=str(session.id),
        now=now.timestamp(),
        not_after=session.expires_at.timestamp(),
    )
    return IssuedSession(
        access_token=access,
        expires_in=claims.expires_at - claims.issued_at,
        refresh_token=refresh_token,
        refresh_expires_in=_seconds_until(session.expires_at, now),
        session_id=str(session.id),
        context=context,
    )


# --------------------------------------------------------------------------------------
# Starting, refreshing
# --------------------------------------------------------------------------------------


def session_start(
    *, user_id: int, token_version: int, device: str, ip: str | None, now: datetime | None = None
) -> IssuedSession:
    """Open a session for a user whose credentials were just checked (``token_version`` as the
    database has it); past the per-user limit the oldest live sessions end. The context
    returned already lists the new session. Raises SessionGone if it ended meanwhile."""
    now = now or timezone.now()
    session, refresh_token = session_create(user_id=user_id, token_version=token_version, device=device, ip=ip, now=now)
    logger.info("session started", extra={"user_id": user_id, "session_id": str(session.pk)})
    return _issue(session, refresh_token, now)


def session_create(
    *, user_id: int, token_version: int, device: str, ip: str | None, now: datetime
) -> tuple[Session, str]:
    """The session row and its first refresh token (ending the oldest past the per-user limit);
    cached contexts of the user are invalidated on commit."""
    refresh_token = secrets.token_urlsafe(32)
    with transaction.atomic():
        session = Session.objects.create(
            user_id=user_id,
            device=device_name(device),
            ip=ip or None,
            created_at=now,
            last_used_at=now,
            expires_at=min(
                now + timedelta(seconds=int(accounts_settings.REFRESH_TOKEN_TTL)),
                now + timedelta(seconds=int(accounts_settings.REFRESH_TOKEN_MAX_AGE)),
            ),
            max_expires_at=now + timedelta(seconds=int(accounts_settings.REFRESH_TOKEN_MAX_AGE)),
            token_version=token_version,
            refresh_hash=_token_hash(refresh_token),
            refreshed_at=now,
        )
        overflow = list(
            Session.objects.filter(user_id=user_id, ended_at__isnull=True, expires_at__gt=now)
            .order_by("-created_at", "-pk")
            .values_list("pk", flat=True)[int(accounts_settings.SESSIONS_PER_USER) :]
        )
        if overflow:
            Session.objects.filter(pk__in=overflow, ended_at__isnull=True).update(
                ended_at=now, end_reason=EndReason.LIMIT
            )
        context_invalidate(user_ids=[user_id])
    return session, refresh_token


def session_refresh(*, refresh_token: str, now: datetime | None = None) -> IssuedSession:
    """Trade a refresh token for a new access token and a new refresh token (the old one retires).

    Three statements on the usual path (find the session with its user, move the session to
    the successor if nobody did meanwhile, record the retired token); no password hashing.
    Two concurrent refreshes of one token leave exactly one successor: the loser of the
    conditional update takes the retired path and, within the leeway, gets the same one.
    """
    now = now or timezone.now()
    presented = _token_hash(refresh_token)
    with transaction.atomic():
        session = Session.objects.select_related("user").filter(refresh_hash=presented).first()
        if session is not None:
            _check_usable(session, now)
            successor = _successor(refresh_token, _successor_keys()[0])
            expires = min(now + timedelta(seconds=int(accounts_settings.REFRESH_TOKEN_TTL)), session.max_expires_at)
            moved = Session.objects.filter(pk=session.pk, refresh_hash=presented, ended_at__isnull=True).update(
                refresh_hash=_token_hash(successor), refreshed_at=now, last_used_at=now, expires_at=expires
            )
            if moved:
                RetiredRefreshToken.objects.create(token_hash=presented, session_id=session.pk, retired_at=now)
                session.expires_at = expires
                try:
                    return _issue(session, successor, now)
                except SessionGone:
                    raise RefreshRefused("Refresh token is invalid or expired.") from None
        outcome = _presented_again(refresh_token, presented, now)
    if isinstance(outcome, RefreshRefused):
        raise outcome  # after the commit: a reuse's session end must stay
    return outcome


def _check_usable(session: Session, now: datetime) -> None:
    user = session.user
    if (
        session.ended_at is not None
        or session.expires_at <= now
        or not user.is_active
        or user.token_version != session.token_version
    ):
        raise RefreshRefused("Refresh token is invalid or expired.")


def _presented_again(refresh_token: str, presented: str, now: datetime) -> IssuedSession | RefreshRefused:
    """A token that is not its session's current one: unknown, a retry within the leeway, or a reuse."""
    retired = RetiredRefreshToken.objects.select_related("session", "session__user").filter(token_hash=presented)
    record = retired.first()
    if record is None:
        return RefreshRefused("Refresh token is invalid or expired.")
    session = record.session
    if session.ended_at is not None:
        return RefreshRefused("Refresh token is invalid or expired.")
    leeway = timedelta(seconds=int(accounts_settings.REFRESH_REUSE_LEEWAY))
    if now - record.retired_at <= leeway:
        for key in _successor_keys():
            successor = _successor(refresh_token, key)
            if hmac.compare_digest(_token_hash(successor), session.refresh_hash):
                # A retry of the refresh that retired it: the same successor, a new access token.
                try:
                    _check_usable(session, now)
                    return _issue(session, successor, now)
                except RefreshRefused as exc:
                    return exc
                except SessionGone:
                    return RefreshRefused("Refresh token is invalid or expired.")
    ended = Session.objects.filter(pk=session.pk, ended_at__isnull=True).update(
        ended_at=now, end_reason=EndReason.REUSE
    )
    if ended:
        context_invalidate(user_ids=[session.user_id])
    logger.warning(
        "refresh token reused: session ended",
        extra={"category": "security", "user_id": session.user_id, "session_id": str(session.pk)},
    )
    return RefreshReused("Refresh token was already used; the session has been ended.")


# --------------------------------------------------------------------------------------
# Ending
# --------------------------------------------------------------------------------------


@transaction.atomic
def sessions_end(
    *, user_id: int, session_ids: list[str] | None = None, reason: str, now: datetime | None = None
) -> int:
    """End these sessions of the user (all of them with ``session_ids=None``); their access
    tokens are refused from the next request on, on every process. Returns how many ended."""
    live = Session.objects.filter(user_id=user_id, ended_at__isnull=True)
    if session_ids is not None:
        live = live.filter(pk__in=session_ids)
    ended = live.update(ended_at=now or timezone.now(), end_reason=reason)
    if ended:
        context_invalidate(user_ids=[user_id])
    return ended


@transaction.atomic
def sessions_end_everyone(*, reason: str = EndReason.INCIDENT, now: datetime | None = None) -> int:
    """The incident switch: every live session of every user ends; returns how many."""
    user_ids = list(Session.objects.filter(ended_at__isnull=True).values_list("user_id", flat=True).distinct())
    ended = Session.objects.filter(ended_at__isnull=True).update(ended_at=now or timezone.now(), end_reason=reason)
    context_invalidate(user_ids=user_ids)
    logger.warning("every session ended", extra={"category": "security", "sessions": ended, "reason": reason})
    return ended


def sessions_prune(*, now: datetime | None = None) -> int:
    """Delete sessions (ended or not) whose refresh token has expired, with their retired
    tokens: every access token they covered expired with them. Returns how many went."""
    horizon = (now or timezone.now()) - timedelta(seconds=int(accounts_settings.TOKEN_CLOCK_SKEW) + 60)
    pruned = 0
    while True:  # in batches: each is one short transaction
        with transaction.atomic():
            expired = list(Session.objects.filter(expires_at__lt=horizon).values_list("pk", flat=True)[:5_000])
            if not expired:
                return pruned
            RetiredRefreshToken.objects.filter(session_id__in=expired).delete()
            Session.objects.filter(pk__in=expired).delete()
        pruned += len(expired)
