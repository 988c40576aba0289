"""Sessions: refresh with rotation, reuse detection and leeway, expiry, limits, the session list and ending sessions."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts import services, sessions
from accounts.models import RetiredRefreshToken, Session, User
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "/api/auth/login"
REFRESH = "/api/auth/refresh"
SESSIONS = "/api/auth/sessions"
LOGOUT = "/api/auth/logout"
ME = "/api/me"


def login(client, user, device: str | None = None, **extra) -> dict:
    body = {"username": user.username, "password": PASSWORD}
    if device is not None:
        body["device"] = device
    response = client.post(LOGIN, body, format="json", **extra)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client, token: str):
    return client.post(REFRESH, {"refresh_token": token}, format="json")


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def user():
    return MembershipFactory().user


def accounts_settings(settings, **changes):
    settings.ACCOUNTS = {**settings.ACCOUNTS, **changes}


# --------------------------------------------------------------------------------------
# Login and refresh
# --------------------------------------------------------------------------------------


def test_login_opens_a_session_whose_refresh_token_is_stored_only_as_a_hash(api_client, user):
    body = login(api_client, user, device="Alice's phone", HTTP_USER_AGENT="ignored/1.0", REMOTE_ADDR="10.1.2.3")
    session = Session.objects.get(pk=body["session_id"])
    assert session.device == "Alice's phone" and session.ip == "10.1.2.3" and session.ended_at is None
    assert session.refresh_hash == hashlib.sha256(body["refresh_token"].encode()).hexdigest()
    with connection.cursor() as cursor:  # the token itself is nowhere in the database
        for table in ("accounts_session", "accounts_retiredrefreshtoken", "cachemgmt_dependencychange"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608
            assert body["refresh_token"] not in repr(cursor.fetchall())
    assert body["refresh_expires_in"] == 2_592_000


def test_the_device_name_defaults_to_the_user_agent(api_client, user):
    body = login(api_client, user, HTTP_USER_AGENT="ExampleApp/2.1 (iOS)")
    assert Session.objects.get(pk=body["session_id"]).device == "ExampleApp/2.1 (iOS)"


# WSGI hands headers over as latin-1 text: any byte may arrive, control characters included.
@pytest.mark.parametrize("agent", ["Evil\x00Agent\r\n", "caf\xc3\xa9 \xff\xfe", "x" * 5000, "\t\x07\x1b[31m"])
def test_any_user_agent_is_stored_as_printable_text(api_client, user, agent):
    body = login(api_client, user, HTTP_USER_AGENT=agent)
    device = Session.objects.get(pk=body["session_id"]).device
    assert device.isprintable() and len(device) <= 200


def test_refresh_rotates_both_tokens_and_retires_the_old_refresh_token(api_client, user):
    first = login(api_client, user)
    response = refresh(api_client, first["refresh_token"])
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    second = response.json()
    assert set(second) == set(first)
    assert second["session_id"] == first["session_id"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["context"] == first["context"]
    assert api_client.get(ME, **auth(second["access_token"])).status_code == 200
    retired = RetiredRefreshToken.objects.get()
    assert retired.token_hash == hashlib.sha256(first["refresh_token"].encode()).hexdigest()
    assert refresh(api_client, second["refresh_token"]).status_code == 200  # the successor rotates in turn


def test_a_refresh_takes_the_fresh_context(api_client, user):
    first = login(api_client, user)
    services.profile_update(user_id=user.pk, display_name="Renamed")
    body = refresh(api_client, first["refresh_token"]).json()
    assert body["context"]["user"]["display_name"] == "Renamed"


def test_a_retired_refresh_token_presented_after_the_leeway_ends_the_session(api_client, user, caplog):
    first = login(api_client, user)
    now = timezone.now()
    second = sessions.session_refresh(refresh_token=first["refresh_token"], now=now)
    later = now + timedelta(seconds=6)
    with pytest.raises(sessions.RefreshReused):
        sessions.session_refresh(refresh_token=first["refresh_token"], now=later)
    session = Session.objects.get(pk=first["session_id"])
    assert session.ended_at is not None and session.end_reason == "refresh_reused"
    # Every token of the session is refused: the thief's successor and the access tokens.
    for access in (first["access_token"], second.access_token):
        refused = api_client.get(ME, **auth(access))
        assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
    assert refresh(api_client, second.refresh_token).json()["code"] == "refresh_invalid"
    warning = next(r for r in caplog.records if r.getMessage() == "refresh token reused: session ended")
    assert warning.levelname == "WARNING" and warning.category == "security"
    assert warning.user_id == user.pk and warning.session_id == first["session_id"]
    assert first["refresh_token"] not in caplog.text and second.refresh_token not in caplog.text


def test_reuse_is_answered_with_its_own_code_and_ends_the_session_through_the_api(api_client, user, settings):
    accounts_settings(settings, REFRESH_REUSE_LEEWAY=0)
    first = login(api_client, user)
    assert refresh(api_client, first["refresh_token"]).status_code == 200
    response = refresh(api_client, first["refresh_token"])
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Refresh token was already used; the session has been ended.",
        "code": "refresh_reused",
    }
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Session.objects.get(pk=first["session_id"]).end_reason == "refresh_reused"


def test_a_retry_within_the_leeway_gets_the_same_successor(api_client, user):
    first = login(api_client, user)
    now = timezone.now()
    answer = sessions.session_refresh(refresh_token=first["refresh_token"], now=now)
    retry = sessions.session_refresh(refresh_token=first["refresh_token"], now=now + timedelta(seconds=3))
    assert retry.refresh_token == answer.refresh_token
    assert Session.objects.get(pk=first["session_id"]).ended_at is None
    assert RetiredRefreshToken.objects.count() == 1
    assert api_client.get(ME, **auth(retry.access_token)).status_code == 200


def test_a_retry_after_the_successor_was_itself_used_is_a_reuse(api_client, user):
    first = login(api_client, user)
    now = timezone.now()
    second = sessions.session_refresh(refresh_token=first["refresh_token"], now=now)
    sessions.session_refresh(refresh_token=second.refresh_token, now=now + timedelta(seconds=1))
    with pytest.raises(sessions.RefreshReused):
        sessions.session_refresh(refresh_token=first["refresh_token"], now=now + timedelta(seconds=2))


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": ""}, {"refresh_token": 5}, {"refresh_token": "x" * 129}, {"refresh_token": "é" * 10},
     {"refresh_token": "a\x00b"}, [], "token"],
)  # fmt: skip
def test_malformed_refresh_bodies_get_400_and_change_nothing(api_client, user, body):
    first = login(api_client, user)
    response = api_client.post(REFRESH, body, format="json")
    assert response.status_code == 400
    assert (
        Session.objects.get(pk=first["session_id"]).refresh_hash
        == hashlib.sha256(first["refresh_token"].encode()).hexdigest()
    )


def test_an_unknown_refresh_token_is_401_refresh_invalid(api_client, user):
    response = refresh(api_client, "not-a-token-we-issued")
    assert response.status_code == 401
    assert response.json()["code"] == "refresh_invalid"


def test_failed_refreshes_are_throttled_per_address(api_client, settings):
    accounts_settings(settings, REFRESH_FAILURES_PER_ADDRESS=3)
    statuses = [refresh(api_client, f"guess-{i}").status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    throttled = refresh(api_client, "guess-again")
    assert throttled.json()["code"] == "throttled" and int(throttled["Retry-After"]) > 0


def test_a_refresh_does_three_statements_and_no_password_hashing(api_client, user, settings):
    from django.test.utils import CaptureQueriesContext

    from tests.support.hashers import CountingHasher

    first = login(api_client, user)
    settings.PASSWORD_HASHERS = ["tests.support.hashers.CountingHasher"]
    CountingHasher.computed = 0
    with CaptureQueriesContext(connection) as queries:
        assert refresh(api_client, first["refresh_token"]).status_code == 200
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")  # transaction control, not statements
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(control)]
    assert len(statements) == 3, statements
    assert CountingHasher.computed == 0


# --------------------------------------------------------------------------------------
# Expiry (injected clock), the user's state, the per-user limit
# --------------------------------------------------------------------------------------


def test_the_refresh_token_slides_and_stops_at_the_absolute_maximum(user, settings):
    accounts_settings(settings, REFRESH_TOKEN_TTL=300, REFRESH_TOKEN_MAX_AGE=600)
    t0 = timezone.now()
    issued = sessions.session_start(user_id=user.pk, token_version=user.token_version, device="d", ip=None, now=t0)
    assert issued.refresh_expires_in == 300
    issued = sessions.session_refresh(refresh_token=issued.refresh_token, now=t0 + timedelta(seconds=200))
    assert issued.refresh_expires_in == 300  # slid to t0 + 500
    issued = sessions.session_refresh(refresh_token=issued.refresh_token, now=t0 + timedelta(seconds=450))
    assert issued.refresh_expires_in == 150  # capped at t0 + 600
    assert issued.expires_in == 150  # an access token never outlives its session
    with pytest.raises(sessions.RefreshRefused):
        sessions.session_refresh(refresh_token=issued.refresh_token, now=t0 + timedelta(seconds=601))


def test_an_unused_refresh_token_expires_after_its_sliding_lifetime(user, settings):
    accounts_settings(settings, REFRESH_TOKEN_TTL=300, REFRESH_TOKEN_MAX_AGE=600)
    t0 = timezone.now()
    issued = sessions.session_start(user_id=user.pk, token_version=user.token_version, device="d", ip=None, now=t0)
    with pytest.raises(sessions.RefreshRefused):
        sessions.session_refresh(refresh_token=issued.refresh_token, now=t0 + timedelta(seconds=301))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda u: services.user_set_password(user_id=u.pk, password="n3w-passw0rd!"), id="password"),
        pytest.param(lambda u: services.user_set_active(user_id=u.pk, is_active=False), id="deactivation"),
        pytest.param(lambda u: (setattr(u, "is_active", False), u.save()), id="deactivation-orm"),
    ],
)
def test_a_password_change_or_deactivation_ends_every_session(api_client, user, change):
    bodies = [login(api_client, user) for _ in range(2)]
    change(User.objects.get(pk=user.pk))
    for body in bodies:
        assert api_client.get(ME, **auth(body["access_token"])).status_code == 401
        assert refresh(api_client, body["refresh_token"]).status_code == 401
    assert not Session.objects.filter(user=user, ended_at__isnull=True).exists()


def test_past_the_per_user_limit_the_oldest_session_ends(api_client, user, settings):
    accounts_settings(settings, SESSIONS_PER_USER=2)
    bodies = [login(api_client, user, device=f"device {i}") for i in range(3)]
    assert api_client.get(ME, **auth(bodies[0]["access_token"])).status_code == 401
    assert Session.objects.get(pk=bodies[0]["session_id"]).end_reason == "session_limit"
    for body in bodies[1:]:
        assert api_client.get(ME, **auth(body["access_token"])).status_code == 200
    listed = api_client.get(SESSIONS, **auth(bodies[2]["access_token"])).json()
    assert [s["device"] for s in listed] == ["device 2", "device 1"]


# --------------------------------------------------------------------------------------
# The session list, ending one, logout
# --------------------------------------------------------------------------------------


def test_the_session_list_shows_the_callers_live_sessions_with_the_current_one_marked(api_client, user):
    phone = login(api_client, user, device="phone", REMOTE_ADDR="10.0.0.7")
    laptop = login(api_client, user, device="laptop")
    login(api_client, UserFactory(), device="someone else's")
    response = api_client.get(SESSIONS, **auth(laptop["access_token"]))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    listed = response.json()
    assert [(s["device"], s["current"]) for s in listed] == [("laptop", True), ("phone", False)]
    assert set(listed[0]) == {"id", "device", "ip", "created_at", "last_used_at", "expires_at", "current"}
    assert listed[1]["id"] == phone["session_id"] and listed[1]["ip"] == "10.0.0.7"


def test_ending_one_of_your_sessions_ends_its_tokens_at_once(api_client, user):
    phone, laptop = login(api_client, user, device="phone"), login(api_client, user, device="laptop")
    response = api_client.delete(f"{SESSIONS}/{phone['session_id']}", **auth(laptop["access_token"]))
    assert response.status_code == 204
    assert api_client.get(ME, **auth(phone["access_token"])).status_code == 401
    assert refresh(api_client, phone["refresh_token"]).status_code == 401
    assert api_client.get(ME, **auth(laptop["access_token"])).status_code == 200
    assert Session.objects.get(pk=phone["session_id"]).end_reason == "ended_by_user"


@pytest.mark.parametrize("which", ["another user's", "unknown", "not an id"])
def test_ending_a_session_that_is_not_yours_is_404_and_ends_nothing(api_client, user, which):
    mine = login(api_client, user)
    theirs = login(api_client, UserFactory())
    target = {
        "another user's": theirs["session_id"],
        "unknown": "00000000-0000-0000-0000-000000000000",
        "not an id": "../../admin",
    }[which]
    response = api_client.delete(f"{SESSIONS}/{target}", **auth(mine["access_token"]))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert api_client.get(ME, **auth(theirs["access_token"])).status_code == 200
    assert not Session.objects.filter(ended_at__isnull=False).exists()


def test_logout_ends_the_current_session_and_its_refresh_token(api_client, user):
    body = login(api_client, user)
    other = login(api_client, user)
    assert api_client.post(LOGOUT, **auth(body["access_token"])).status_code == 204
    assert refresh(api_client, body["refresh_token"]).status_code == 401
    assert refresh(api_client, other["refresh_token"]).status_code == 200


def test_logout_all_ends_every_session(api_client, user):
    bodies = [login(api_client, user) for _ in range(3)]
    assert api_client.post(LOGOUT, {"all": True}, format="json", **auth(bodies[0]["access_token"])).status_code == 204
    for body in bodies:
        assert refresh(api_client, body["refresh_token"]).status_code == 401
        assert api_client.get(ME, **auth(body["access_token"])).status_code == 401
    assert set(Session.objects.values_list("end_reason", flat=True)) == {"logout_all"}


def test_session_endpoints_need_a_bearer_token(api_client):
    assert api_client.get(SESSIONS).status_code == 401
    assert api_client.delete(f"{SESSIONS}/00000000-0000-0000-0000-000000000000").status_code == 401


# --------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------


def test_pruning_removes_only_sessions_whose_tokens_have_all_expired(user):
    long_ago = timezone.now() - timedelta(days=400)
    old = sessions.session_start(
        user_id=user.pk, token_version=user.token_version, device="old", ip=None, now=timezone.now()
    )
    expired, _ = sessions.session_create(
        user_id=user.pk, token_version=user.token_version, device="expired", ip=None, now=long_ago
    )
    from accounts.tasks import sessions_prune_task

    assert sessions_prune_task() == 1
    assert list(Session.objects.values_list("device", flat=True)) == ["old"]
    assert sessions_prune_task() == 0  # idempotent
    assert old.session_id == str(Session.objects.get().pk)
    assert not Session.objects.filter(pk=expired.pk).exists()


# --------------------------------------------------------------------------------------
# Concurrency (real threads, real connections)
# --------------------------------------------------------------------------------------


@pytest.mark.services
def test_concurrent_refreshes_of_one_token_leave_exactly_one_successor(postgres, api_client, user):
    for _round in range(5):
        body = login(api_client, user)
        barrier = threading.Barrier(8)
        answers: list[str] = []
        errors: list[BaseException] = []

        def attempt(
            token: str = body["refresh_token"],
            barrier: threading.Barrier = barrier,
            answers: list[str] = answers,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                answers.append(sessions.session_refresh(refresh_token=token).refresh_token)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(answers) == 8 and len(set(answers)) == 1  # every caller got the one successor
        session = Session.objects.get(pk=body["session_id"])
        assert session.ended_at is None
        assert session.refresh_hash == hashlib.sha256(answers[0].encode()).hexdigest()
        assert RetiredRefreshToken.objects.filter(session=session).count() == 1
