"""One login limiter for every door (API and admin), exact under concurrency."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts import services
from accounts.throttling import LoginThrottled
from tests.factories import PASSWORD, UserFactory


def admin_login(client: Client, username: str, password: str):
    return client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})


@pytest.mark.django_db
def test_the_admin_login_is_throttled_like_the_api_login(settings, counting_hasher):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 5, "LOGIN_FAILURES_PER_ADDRESS": 1000}
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    counting_hasher.computed = 0
    answers = [admin_login(client, staff.username, f"guess {i}") for i in range(30)]
    assert counting_hasher.computed == 5  # only the first five passwords were ever checked
    assert all(answer.status_code == 200 for answer in answers)
    assert "Too many failed login attempts" in answers[-1].content.decode()
    right = admin_login(client, staff.username, PASSWORD)
    assert right.status_code == 200 and "_auth_user_id" not in client.session  # still refused
    # The same counters: the API refuses this username too.
    api = APIClient().post("/api/auth/login", {"username": staff.username, "password": PASSWORD}, format="json")
    assert api.status_code == 429 and int(api["Retry-After"]) > 0


@pytest.mark.django_db
def test_api_failures_count_against_the_admin_login(settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 3, "LOGIN_FAILURES_PER_ADDRESS": 1000}
    staff = UserFactory(is_staff=True, is_superuser=True)
    for _ in range(3):
        body = {"username": staff.username, "password": "wrong"}
        assert APIClient().post("/api/auth/login", body, format="json").status_code == 401
    client = Client()
    answer = admin_login(client, staff.username, PASSWORD)
    assert "Too many failed login attempts" in answer.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_successful_login_gives_its_attempt_back(settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 2, "LOGIN_FAILURES_PER_ADDRESS": 1000}
    user = UserFactory()
    with pytest.raises(services.LoginFailed):
        services.auth_login(username=user.username, password="wrong", client_address="10.0.0.1")
    for _ in range(3):  # successes never use up the limit
        services.auth_login(username=user.username, password=PASSWORD, client_address="10.0.0.1")
    with pytest.raises(services.LoginFailed):
        services.auth_login(username=user.username, password="wrong", client_address="10.0.0.1")
    with pytest.raises(LoginThrottled):
        services.auth_login(username=user.username, password=PASSWORD, client_address="10.0.0.1")


def burst(username: str, attempts: int) -> list[str]:
    """``attempts`` wrong passwords for one username, all released at once from their own threads."""
    start = threading.Barrier(attempts)
    outcomes: list[str] = []

    def attempt(i: int) -> None:
        start.wait()
        try:
            services.auth_login(username=username, password=f"wrong {i}", client_address=f"10.7.0.{i}")
        except LoginThrottled:
            outcomes.append("throttled")
        except services.LoginFailed:
            outcomes.append("failed")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_burst_evaluates_exactly_the_limit(settings, counting_hasher):
    """20 parallel wrong passwords against a limit of 5: 5 hashes, 15 refusals (the cache in use:
    Redis in the PostgreSQL + Redis run, the in-process store in the embedded one)."""
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 5, "LOGIN_FAILURES_PER_ADDRESS": 1000}
    user = UserFactory()
    counting_hasher.computed = 0
    outcomes = burst(user.username, 20)
    assert sorted(outcomes).count("failed") == 5 and outcomes.count("throttled") == 15, outcomes
    assert counting_hasher.computed == 5


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_burst_on_real_redis_evaluates_exactly_the_limit(redis_cache, settings, counting_hasher):
    from cachemgmt import cache

    assert cache.backend_name() == "redis"
    settings.ACCOUNTS = {**settings.ACCOUNTS, "LOGIN_FAILURES_PER_USERNAME": 5, "LOGIN_FAILURES_PER_ADDRESS": 1000}
    counting_hasher.computed = 0
    outcomes = burst("nobody-at-all", 20)  # unknown users are hashed too (a dummy hash)
    assert outcomes.count("failed") == 5 and outcomes.count("throttled") == 15, outcomes
    assert counting_hasher.computed == 5
