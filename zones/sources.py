"""Sources of zone mappings (organization -> zone code/name) behind one interface.

* :class:`FixtureSource` reads the bundled sample ``zones/fixtures/zone_mappings.csv``.
* :class:`BigQuerySource` streams the rows of a BigQuery table page by page.

Every failure of a source surfaces as :class:`ZoneSourceError` with a one-line
message (no credentials, no multi-line job footers).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

__all__ = [
    "FIXTURE_PATH",
    "BigQuerySource",
    "FixtureSource",
    "ZoneRow",
    "ZoneSource",
    "ZoneSourceError",
    "bigquery_client",
    "get_source",
]

logger = logging.getLogger(__name__)

FIXTURE_PATH = Path(__file__).resolve().parent / "fixtures" / "zone_mappings.csv"
COLUMNS: tuple[str, str, str] = ("organization_slug", "zone_code", "zone_name")


@dataclass(frozen=True, slots=True)
class ZoneRow:
    organization_slug: str
    zone_code: str
    zone_name: str


class ZoneSourceError(Exception):
    """A zone source failed (network, HTTP error, timeout, bad data, missing table)."""


@runtime_checkable
class ZoneSource(Protocol):
    name: str

    def fetch(self) -> Iterator[ZoneRow]: ...


# -- fixture -------------------------------------------------------------------


class FixtureSource:
    """The bundled sample CSV (header ``organization_slug,zone_code,zone_name``)."""

    name = "fixture"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else FIXTURE_PATH

    def __repr__(self) -> str:
        return f"FixtureSource(path={str(self.path)!r})"

    def fetch(self) -> Iterator[ZoneRow]:
        try:
            handle = self.path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise ZoneSourceError(f"fixture source: cannot read {self.path}: {exc.strerror or exc}") from exc
        with handle:
            reader = csv.reader(handle)
            try:
                header = next(reader, None)
                if header is None or tuple(h.strip() for h in header[:3]) != COLUMNS:
                    raise ZoneSourceError(f"fixture source: {self.path} must start with the header {','.join(COLUMNS)}")
                for row in reader:
                    if not row:
                        continue
                    padded = [*row, "", "", ""][:3]
                    yield ZoneRow(padded[0].strip(), padded[1].strip(), padded[2].strip())
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ZoneSourceError(f"fixture source: {self.path} is not valid CSV: {exc}") from exc


# -- BigQuery client (one per process) ----------------------------------------------

_CREDENTIALS_REFRESH_TIMEOUT = 60.0
# Upper bound for the HTTP timeout of the requests made while a source is inside a
# client call.  Needed because the client raises the transport timeout of
# jobs.getQueryResults to at least 120 s whatever ``timeout`` the caller passes.
_TIMEOUT_CAP: ContextVar[float | None] = ContextVar("zone_source_timeout_cap", default=None)


def _capped(timeout: Any, cap: float) -> Any:
    if timeout is None:
        return cap
    if isinstance(timeout, (int, float)):
        return min(float(timeout), cap)
    if isinstance(timeout, tuple):
        return tuple(cap if t is None else min(float(t), cap) for t in timeout)
    return cap


class _TimeoutCappedSession(AuthorizedSession):
    """An AuthorizedSession whose per-request timeout honours ``_TIMEOUT_CAP``."""

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> Any:
        cap = _TIMEOUT_CAP.get()
        if cap is not None and len(args) < 4:  # timeout is the 4th optional positional
            kwargs["timeout"] = _capped(kwargs.get("timeout"), cap)
        return super().request(method, url, *args, **kwargs)  # type: ignore[no-untyped-call]


_clients: dict[tuple[str | None, str | None], bigquery.Client] = {}
_clients_lock = threading.Lock()


def _reset_after_fork() -> None:
    # HTTP sessions must not be shared across fork(); children build their own.
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _create_client(project: str | None, api_endpoint: str | None) -> bigquery.Client:
    credentials: Credentials
    if api_endpoint and not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        if not project:
            raise ValueError("a project is required with api_endpoint and anonymous credentials")
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    else:
        credentials, _ = google.auth.default(scopes=list(bigquery.Client.SCOPE))
    session = _TimeoutCappedSession(  # type: ignore[no-untyped-call]
        credentials, refresh_timeout=_CREDENTIALS_REFRESH_TIMEOUT
    )
    if not api_endpoint:
        session.configure_mtls_channel()  # type: ignore[no-untyped-call]
    client_options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return bigquery.Client(
        project=project,
        credentials=credentials,
        client_options=client_options,
        _http=session,
    )


def bigquery_client(project: str | None, api_endpoint: str | None) -> bigquery.Client:
    """The process-wide client for ``(project, api_endpoint)``, created on first use.

    With ``api_endpoint`` and no ``GOOGLE_APPLICATION_CREDENTIALS`` the client is
    anonymous (emulators, local fakes); otherwise it uses the default credentials.
    """
    key = (project or None, api_endpoint or None)
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _create_client(*key)
            _clients[key] = client
            logger.debug("created BigQuery client for project=%s endpoint=%s", *key)
        return client


def _clear_client_cache() -> None:
    """Forget the cached clients (tests)."""
    with _clients_lock:
        for client in _clients.values():
            with contextlib.suppress(Exception):
                client.close()  # type: ignore[no-untyped-call]
        _clients.clear()


# -- BigQuery source -------------------------------------------------------------------

_PROJECT_RE = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
_DATASET_RE = r"[A-Za-z0-9_]{1,1024}"
_TABLE_RE = r"[A-Za-z0-9_-]{1,1024}"
_FULL_TABLE = re.compile(rf"(?P<project>{_PROJECT_RE})\.(?P<dataset>{_DATASET_RE})\.(?P<table>{_TABLE_RE})")

MIN_SLUG_LENGTH = 0
_QUERY_TEMPLATE = (
    "SELECT organization_slug, zone_code, zone_name FROM `{table}` "
    "WHERE organization_slug IS NOT NULL AND LENGTH(organization_slug) >= @min_slug_length"
)

# The client's "special job, no result set" iterator (private class, hence getattr).
_EMPTY_ROW_ITERATOR: Any = getattr(bigquery.table, "_EmptyRowIterator", ())
_HTTP_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError)
_SECRETS = (
    (re.compile(r"(?<=://)[^/@\s]+@"), "***@"),
    (re.compile(r"(?i)\b(access_token|key|token|password|secret)=[^&\s]+"), r"\1=***"),
    (re.compile(r"(?i)\bbearer\s+\S+"), "Bearer ***"),
)


def _one_line(text: str, limit: int = 300) -> str:
    text = text.strip().split("\n\n", 1)[0]  # drop the client's "Location/Job ID" footer
    text = " ".join(text.split())
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _validate_table(table: str) -> tuple[str, str, str]:
    match = _FULL_TABLE.fullmatch(table) if isinstance(table, str) else None
    if match is None:
        raise ValueError(
            f"invalid BigQuery table {table!r}: expected project.dataset.table "
            "(project: 6-30 of a-z 0-9 -, dataset: A-Z a-z 0-9 _, table: A-Z a-z 0-9 _ -)"
        )
    return match["project"], match["dataset"], match["table"]


class BigQuerySource:
    """Rows of a BigQuery table, read with a parameterised query, page by page."""

    name = "bigquery"

    def __init__(
        self,
        *,
        project: str | None,
        table: str,
        api_endpoint: str | None = None,
        timeout: float = 30.0,
        page_size: int = 10000,
    ) -> None:
        table_project, _, _ = _validate_table(table)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0:
            raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
        self.project = project or table_project  # project that runs (and pays for) the job
        self.table = table
        self.api_endpoint = api_endpoint or None
        self.timeout = float(timeout)
        self.page_size = page_size
        self.query = _QUERY_TEMPLATE.format(table=table)

    def __repr__(self) -> str:
        return (
            f"BigQuerySource(project={self.project!r}, table={self.table!r}, "
            f"api_endpoint={self.api_endpoint!r}, timeout={self.timeout}, "
            f"page_size={self.page_size})"
        )

    def fetch(self) -> Iterator[ZoneRow]:
        pages, indexes = self._start()
        total = 0
        while True:
            with self._guard():
                page = next(pages, None)
                if page is None:
                    break
                batch = [
                    ZoneRow(
                        _text(row[indexes[0]]),
                        _text(row[indexes[1]]),
                        _text(row[indexes[2]]),
                    )
                    for row in page
                ]
            total += len(batch)
            yield from batch
        logger.info("read %d zone rows from BigQuery table %s", total, self.table)

    def _start(self) -> tuple[Iterator[Any], tuple[int, int, int]]:
        retry: Retry = DEFAULT_RETRY.with_timeout(self.timeout)
        job_config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("min_slug_length", "INT64", MIN_SLUG_LENGTH)],
            use_legacy_sql=False,
        )
        with self._guard():
            client = bigquery_client(self.project, self.api_endpoint)
            job = client.query(
                self.query,
                job_config=job_config,
                retry=retry,
                timeout=self.timeout,
                job_retry=None,
            )
            result = job.result(
                page_size=self.page_size,
                timeout=self.timeout,
                retry=retry,
                job_retry=None,
            )
            if isinstance(result, _EMPTY_ROW_ITERATOR) or result.total_rows is None:
                # A SELECT always has a result set; the client only builds an empty
                # iterator when the response lacks totalRows (DDL/DML-style answers).
                raise ZoneSourceError(self._message("malformed response: no result set"))
            positions = {field.name: i for i, field in enumerate(result.schema)}
            missing = [name for name in COLUMNS if name not in positions]
            if missing:
                raise ZoneSourceError(self._message(f"malformed response: missing column(s) {', '.join(missing)}"))
            indexes = (
                positions[COLUMNS[0]],
                positions[COLUMNS[1]],
                positions[COLUMNS[2]],
            )
            return iter(result.pages), indexes

    def _message(self, detail: str) -> str:
        return _one_line(f"bigquery source ({self.table}): {detail}")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Cap HTTP timeouts and turn any client/transport failure into ZoneSourceError."""
        token = _TIMEOUT_CAP.set(self.timeout)
        try:
            yield
        except ZoneSourceError:
            raise
        except Exception as exc:  # translated, never swallowed
            raise ZoneSourceError(self._message(self._describe(exc))) from exc
        finally:
            _TIMEOUT_CAP.reset(token)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, api_exceptions.RetryError):
            cause = exc.cause
            if cause is None or cause is exc:
                return f"gave up retrying: {exc.message}"
            return f"gave up retrying after {self.timeout:g}s: {self._describe(cause)}"
        endpoint = self.api_endpoint or "BigQuery"
        if isinstance(exc, (concurrent.futures.TimeoutError, requests.Timeout)):
            return f"timed out after {self.timeout:g}s waiting for {endpoint}"
        if isinstance(exc, requests.ConnectionError):
            return f"cannot connect to {endpoint}"
        if isinstance(exc, api_exceptions.NotFound):
            return f"not found (404): {_HTTP_PREFIX.sub('', exc.message)}"
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            reason = f" {exc.reason}" if exc.reason else ""
            code = f"HTTP {exc.code}" if exc.code is not None else "error"
            return f"{code}{reason}: {_HTTP_PREFIX.sub('', exc.message)}"
        if isinstance(exc, api_exceptions.GoogleAPIError):
            return f"{type(exc).__name__}: {exc}"
        if isinstance(exc, google.auth.exceptions.GoogleAuthError):
            return f"credentials problem: {type(exc).__name__}: {exc}"
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            return "malformed response: body is not JSON"
        if isinstance(exc, requests.RequestException):
            return f"request failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, _MALFORMED):
            return f"malformed response: {type(exc).__name__}: {exc}"
        return f"unexpected {type(exc).__name__}: {exc}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


# -- factory ----------------------------------------------------------------------------

_SOURCE_SETTINGS: dict[str, frozenset[str]] = {
    FixtureSource.name: frozenset({"path"}),
    BigQuerySource.name: frozenset({"project", "table", "api_endpoint", "timeout", "page_size"}),
}
_ALL_SETTINGS = frozenset().union(*_SOURCE_SETTINGS.values())


def get_source(name: str, **settings: Any) -> ZoneSource:
    """Build the source called ``name`` ("fixture" or "bigquery").

    ``settings`` may hold the settings of every source (so callers can pass one
    configuration block); those that belong to another source are ignored,
    unknown ones raise ``TypeError``.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _SOURCE_SETTINGS:
        raise ValueError(f"unknown zone source {name!r}; expected one of: {', '.join(sorted(_SOURCE_SETTINGS))}")
    unknown = sorted(set(settings) - _ALL_SETTINGS)
    if unknown:
        raise TypeError(f"unknown zone source setting(s): {', '.join(unknown)}")
    own = {k: v for k, v in settings.items() if k in _SOURCE_SETTINGS[key]}
    if key == FixtureSource.name:
        return FixtureSource(**own)
    if not own.get("table"):
        raise ValueError("the bigquery zone source needs a 'table' (project.dataset.table)")
    own.setdefault("project", None)
    return BigQuerySource(**own)
