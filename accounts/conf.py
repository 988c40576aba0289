"""Settings of the accounts app: ``settings.ACCOUNTS`` over these defaults."""

from project.appsettings import AppSettings

DEFAULTS = {
    # Seconds a cached context may live; a backstop only, invalidation is by event.
    "USER_CONTEXT_TTL": 900,
    # Lifetime of an access token, seconds (a session's refresh token renews it).
    "ACCESS_TOKEN_TTL": 900,
    # A session's refresh token: sliding lifetime, renewed by each refresh, never past the
    # absolute maximum counted from the login.
    "REFRESH_TOKEN_TTL": 2_592_000,
    "REFRESH_TOKEN_MAX_AGE": 7_776_000,
    # A retired refresh token presented again within this many seconds of its rotation gets
    # the same successor (a client retrying a refresh whose answer it lost); later, it ends
    # the session (reuse detection).
    "REFRESH_REUSE_LEEWAY": 5,
    # Live sessions per user: a login past it ends the oldest, which bounds the session ids
    # a cached context carries.
    "SESSIONS_PER_USER": 20,
    # Signing keys of access tokens as (key id, secret): the first signs, every one verifies.
    # Empty: one key derived from SECRET_KEY (and one from each of SECRET_KEY_FALLBACKS).
    "TOKEN_SIGNING_KEYS": (),
    # Tokens whose iat lies further in the future than this are refused, seconds.
    "TOKEN_CLOCK_SKEW": 30,
    # Longest Authorization header value accepted before any parsing.
    "MAX_TOKEN_LENGTH": 2048,
    # Failed logins allowed per window, per normalised username and per client address.
    "LOGIN_FAILURES_PER_USERNAME": 5,
    "LOGIN_FAILURES_PER_ADDRESS": 20,
    "LOGIN_FAILURE_WINDOW": 900,
    # Failed refreshes allowed per window and client address (many devices may share one).
    "REFRESH_FAILURES_PER_ADDRESS": 100,
    # Client address: REMOTE_ADDR unless this many trusted proxies append X-Forwarded-For.
    "TRUSTED_PROXY_COUNT": 0,
}

accounts_settings = AppSettings("ACCOUNTS", DEFAULTS)
