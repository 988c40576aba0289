"""The login limiter every door shares (API login, admin login): failures per username and per address.

It lives in the authentication backend (``accounts.backends``), so whatever calls Django's
``authenticate()`` with a password is counted by the same counters. An attempt is reserved
atomically before its password is hashed and given back if it succeeds: under any
concurrency, at most the limit of wrong passwords is ever evaluated per window.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

from accounts.conf import accounts_settings
from cachemgmt import cache


class LoginThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many failed login attempts.")
        self.retry_after = retry_after


def client_address(request: Any) -> str:
    """REMOTE_ADDR, or the address the configured number of trusted proxies saw."""
    meta = request.META
    proxies = int(accounts_settings.TRUSTED_PROXY_COUNT)
    if proxies:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(meta.get("REMOTE_ADDR", ""))


def normalize_username(username: str) -> str:
    """The form throttling counts by: case, width and surrounding whitespace do not matter."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _digest(value: str) -> str:
    # Keys never carry client input verbatim.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _throttle_keys(username: str, address: str) -> list[tuple[str, int]]:
    return [
        (
            cache.throttle_key("login-user", _digest(normalize_username(username))),
            int(accounts_settings.LOGIN_FAILURES_PER_USERNAME),
        ),
        (cache.throttle_key("login-addr", _digest(address)), int(accounts_settings.LOGIN_FAILURES_PER_ADDRESS)),
    ]


@dataclass(slots=True)
class LoginAttempt:
    """A reserved attempt: it counts as a failure unless ``succeeded()`` gives it back."""

    keys: list[str]

    def succeeded(self) -> None:
        for key in self.keys:
            cache.window_release(key)
        self.keys = []


def _reserve(keys: list[tuple[str, int]]) -> LoginAttempt:
    window = int(accounts_settings.LOGIN_FAILURE_WINDOW)
    reserved: list[str] = []
    for key, limit in keys:
        count = cache.window_reserve(key, window=window)
        reserved.append(key)
        if count > limit:
            for taken in reserved:
                cache.window_release(taken)
            raise LoginThrottled(cache.window_ttl(key, window))
    return LoginAttempt(keys=reserved)


def refresh_attempt_reserve(*, address: str) -> LoginAttempt:
    """Count one refresh against the address's failure limit, or raise LoginThrottled: guessing
    refresh tokens is throttled like guessing passwords, with a limit of its own (refreshes
    are routine, and a whole office may share one address)."""
    limit = int(accounts_settings.REFRESH_FAILURES_PER_ADDRESS)
    return _reserve([(cache.throttle_key("refresh-addr", _digest(address)), limit)])


def login_attempt_reserve(*, username: str, address: str) -> LoginAttempt:
    """Count one attempt against the username's and the address's limits, or raise LoginThrottled.

    A refused attempt is given back at once (it evaluated no password), so the counters hold
    the failures of the window plus the attempts in flight.
    """
    return _reserve(_throttle_keys(username, address))
