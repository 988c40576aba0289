"""Settings of the accounts app: ``settings.ACCOUNTS`` over these defaults."""

from project.appsettings import AppSettings

DEFAULTS = {
    # Seconds a cached context may live; a backstop only, invalidation is by event.
    "USER_CONTEXT_TTL": 900,
    # Lifetime of a bearer token, seconds.
    "ACCESS_TOKEN_TTL": 3600,
    # Tokens whose iat lies further in the future than this are refused, seconds.
    "TOKEN_CLOCK_SKEW": 30,
    # Longest Authorization header value accepted before any parsing.
    "MAX_TOKEN_LENGTH": 2048,
    # Failed logins allowed per window, per normalised username and per client address.
    "LOGIN_FAILURES_PER_USERNAME": 5,
    "LOGIN_FAILURES_PER_ADDRESS": 20,
    "LOGIN_FAILURE_WINDOW": 900,
    # Client address: REMOTE_ADDR unless this many trusted proxies append X-Forwarded-For.
    "TRUSTED_PROXY_COUNT": 0,
}

accounts_settings = AppSettings("ACCOUNTS", DEFAULTS)
