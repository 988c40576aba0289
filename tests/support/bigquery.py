"""A local fake of the BigQuery REST API v2, good enough for the real client.

``google.cloud.bigquery.Client`` (3.x) pointed at :attr:`FakeBigQuery.url`
through ``client_options={"api_endpoint": url}`` and anonymous credentials can
run ``client.query(sql, job_config=...)`` and iterate ``.result(page_size=...)``
over every page.  The REST methods served (paths are below ``/bigquery/v2``):

========================  ======  ==========================================
jobs.insert               POST    /projects/{p}/jobs
jobs.get                  GET     /projects/{p}/jobs/{jobId}
jobs.cancel               POST    /projects/{p}/jobs/{jobId}/cancel
jobs.query                POST    /projects/{p}/queries
jobs.getQueryResults      GET     /projects/{p}/queries/{jobId}
tabledata.list            GET     /projects/{p}/datasets/{d}/tables/{t}/data
tables.get                GET     /projects/{p}/datasets/{d}/tables/{t}
========================  ======  ==========================================

With the default ``api_method="INSERT"`` the client calls jobs.insert, then
jobs.get (the insert answers ``RUNNING``), then jobs.getQueryResults with
``maxResults`` for the first page and again with ``pageToken`` for every
further page.  Each query job gets an anonymous destination table that
tabledata.list and tables.get also serve.

Every result set has the three STRING columns ``organization_slug``,
``zone_code`` and ``zone_name``; the rows are whatever :attr:`FakeBigQuery.rows`
held when the job was created.  Only the requested page is serialised.

Failure modes (:attr:`FakeBigQuery.mode`):

``ok``              normal answers.
``error500``        every call answers HTTP 500 ``internalError``.
``error404_table``  jobs.insert / jobs.query / tabledata.list / tables.get
                    answer HTTP 404 ``notFound`` for the table in the query.
``slow``            sleep :attr:`delay` seconds before answering (only the REST
                    methods in :attr:`slow_methods`, when that is set), then
                    answer normally.
``garbage``         every call answers HTTP 200 with an HTML (non-JSON) body.
``malformed``       jobs.getQueryResults / jobs.query / tabledata.list answer
                    HTTP 200 with :attr:`malformed_body` (by default: no
                    ``schema`` and rows of the wrong shape).
``job_error``       the job finishes ``DONE`` with ``status.errorResult``
                    (jobs.get); jobs.getQueryResults and jobs.query answer
                    HTTP 400 with the same error, as BigQuery does.

:data:`TABLE` is the zone table the tests configure, and :func:`mappings` builds rows for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["COLUMNS", "MODES", "TABLE", "FakeBigQuery", "Rows", "mappings"]

COLUMNS: tuple[str, str, str] = ("organization_slug", "zone_code", "zone_name")
#: the zone table the tests configure (``ZONES["BIGQUERY_ZONE_TABLE"]``)
TABLE = "fake-project.zones_ds.zone_mappings"
MODES: frozenset[str] = frozenset({"ok", "error500", "error404_table", "slow", "garbage", "malformed", "job_error"})
LOCATION = "US"
_API_PREFIX = "/bigquery/v2"
_SCHEMA: dict[str, Any] = {"fields": [{"name": name, "type": "STRING", "mode": "NULLABLE"} for name in COLUMNS]}
_ANON_DATASET = "_fake_anonymous"
_TABLE_IN_QUERY = re.compile(r"`([^`]+)`")
_PARAM_IN_QUERY = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")

Row = tuple[str | None, str | None, str | None]
Rows = list[tuple[str, str, str]]


def mappings(organizations: int, zones_per_organization: int, *, prefix: str = "org") -> Rows:
    """Rows giving organization ``{prefix}-i`` the zones ``Z{i+j}`` (zones shared between neighbours)."""
    return [
        (f"{prefix}-{i}", f"Z{i + j:05d}", f"Zone {i + j}")
        for i in range(organizations)
        for j in range(zones_per_organization)
    ]


class _HTTPError(Exception):
    """An error answered as a BigQuery-style JSON error body."""

    _STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        409: "ALREADY_EXISTS",
        500: "INTERNAL",
    }

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "status": self._STATUS.get(self.code, "UNKNOWN"),
            }
        }


@dataclass
class _Job:
    project: str
    job_id: str
    query: str
    parameters: list[Any]
    configuration: dict[str, Any]
    rows: Sequence[Row]
    created_ms: int
    failed: bool
    reads: int = 0  # jobs.get calls so far; the first one reports DONE
    destination: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> dict[str, str]:
        return {"projectId": self.project, "jobId": self.job_id, "location": LOCATION}


class FakeBigQuery:
    """A BigQuery REST v2 look-alike on ``127.0.0.1`` in a background thread."""

    def __init__(self, rows: list[tuple[str, str, str]] | None = None, *, page_size: int = 1000) -> None:
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        self.rows: list[tuple[str, str, str]] = list(rows) if rows is not None else []
        self.page_size = page_size  # server-side cap on rows per page
        self.mode: str = "ok"
        self.delay: float = 5.0
        #: REST method names (e.g. ``{"jobs.getQueryResults"}``) that ``slow``
        #: delays; ``None`` delays every call.
        self.slow_methods: frozenset[str] | None = None
        #: body served in ``malformed`` mode.
        self.malformed_body: Any = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobComplete": True,
            "totalRows": "2",
            "rows": [{"g": []}, "not-a-row"],
        }
        self.calls: list[tuple[str, str]] = []  # (method, path with query string)
        self.api_calls: list[str] = []  # REST method names, e.g. "jobs.insert"
        self.last_query: str | None = None
        self.last_parameters: list[Any] = []
        self.url: str = ""
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._tables: dict[tuple[str, str, str], str] = {}  # destination -> job id
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeBigQuery:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._stopping.set()  # wakes handlers sleeping in "slow" mode
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- introspection helpers ----------------------------------------------

    def calls_to(self, api_method: str) -> int:
        """How many requests hit the REST method ``api_method``."""
        with self._lock:
            return self.api_calls.count(api_method)

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.api_calls.clear()

    # -- request handling (called from handler threads) ----------------------

    def _record(self, method: str, raw_path: str) -> None:
        with self._lock:
            self.calls.append((method, raw_path))

    def _record_api(self, api_method: str) -> None:
        with self._lock:
            self.api_calls.append(api_method)

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, str, bytes]:
        """Answer one request: returns (status, content type, body)."""
        self._record(method, raw_path)
        split = urlsplit(raw_path)
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            api_method, args = _route(method, split.path)
            self._record_api(api_method)
            mode = self.mode
            if mode not in MODES:
                raise _HTTPError(500, "internalError", f"FakeBigQuery: unknown mode {mode!r}")
            if mode == "slow" and (self.slow_methods is None or api_method in self.slow_methods):
                self._stopping.wait(self.delay)
            if mode == "error500":
                raise _HTTPError(
                    500,
                    "internalError",
                    "An internal error occurred and the request could not be completed."
                    " This is usually caused by a transient issue. Retrying the job"
                    " with back-off as described in the BigQuery SLA should solve the"
                    " problem.",
                )
            if mode == "garbage":
                page = b"<html><body><h1>502 Bad Gateway</h1>upstream hiccup</body></html>"
                return 200, "text/html; charset=UTF-8", page
            payload = self._dispatch(api_method, args, params, body)
        except _HTTPError as exc:
            return exc.code, "application/json; charset=UTF-8", _dumps(exc.body())
        return 200, "application/json; charset=UTF-8", _dumps(payload)

    def _dispatch(self, api_method: str, args: list[str], params: dict[str, str], body: bytes) -> Any:
        if api_method == "jobs.insert":
            return self._jobs_insert(args[0], _json_body(body))
        if api_method == "jobs.query":
            return self._jobs_query(args[0], _json_body(body), params)
        if api_method == "jobs.get":
            return self._job_resource(self._job(args[0], args[1]), read=True)
        if api_method == "jobs.cancel":
            return {
                "kind": "bigquery#jobCancelResponse",
                "job": self._job_resource(self._job(args[0], args[1]), read=False),
            }
        if api_method == "jobs.getQueryResults":
            job = self._job(args[0], args[1])
            self._raise_job_error(job)
            if self.mode == "malformed":
                return self.malformed_body
            return self._rows_response("bigquery#getQueryResultsResponse", job, params)
        if api_method in ("tabledata.list", "tables.get"):
            project, dataset, table = args
            if self.mode == "error404_table":
                raise _not_found_table(f"{project}:{dataset}.{table}")
            job = self._job_for_table(project, dataset, table)
            if api_method == "tables.get":
                return self._table_resource(job)
            if self.mode == "malformed":
                return self.malformed_body
            return self._tabledata(job, params)
        raise _HTTPError(404, "notFound", f"Not found: {api_method}")  # pragma: no cover

    # -- REST methods ----------------------------------------------------------

    def _create_job(self, project: str, job_id: str, configuration: dict[str, Any]) -> _Job:
        query_config = configuration.get("query")
        if not isinstance(query_config, dict) or not isinstance(query_config.get("query"), str):
            raise _HTTPError(400, "invalid", "Required parameter is missing: query")
        query: str = query_config["query"]
        parameters = list(query_config.get("queryParameters") or [])
        with self._lock:
            self.last_query = query
            self.last_parameters = parameters
        if self.mode == "error404_table":
            match = _TABLE_IN_QUERY.search(query)
            name = match.group(1) if match else "unknown"
            parts = name.split(".")
            if len(parts) == 3:
                name = f"{parts[0]}:{parts[1]}.{parts[2]}"
            raise _not_found_table(name)
        _check_parameters(query, query_config, parameters)
        with self._lock:
            if job_id in self._jobs:
                raise _HTTPError(
                    409,
                    "duplicate",
                    f"Already Exists: Job {project}:{LOCATION}.{job_id}",
                )
            destination = {
                "projectId": project,
                "datasetId": _ANON_DATASET,
                "tableId": f"anon_{job_id.replace('-', '_')}",
            }
            job = _Job(
                project=project,
                job_id=job_id,
                query=query,
                parameters=parameters,
                configuration=configuration,
                rows=self.rows,  # a reference, not a copy
                created_ms=int(time.time() * 1000),
                failed=self.mode == "job_error",
                destination=destination,
            )
            self._jobs[job_id] = job
            self._tables[(project, _ANON_DATASET, destination["tableId"])] = job_id
        return job

    def _jobs_insert(self, project: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HTTPError(400, "invalid", "Invalid JSON payload received.")
        reference = body.get("jobReference") or {}
        job_id = reference.get("jobId") or f"job_{uuid.uuid4().hex}"
        configuration = body.get("configuration")
        if not isinstance(configuration, dict):
            raise _HTTPError(400, "invalid", "Required parameter is missing: configuration")
        job = self._create_job(project, str(job_id), configuration)
        return self._job_resource(job, read=False)

    def _jobs_query(self, project: str, body: Any, params: dict[str, str]) -> Any:
        if not isinstance(body, dict):
            raise _HTTPError(400, "invalid", "Invalid JSON payload received.")
        query_config = {k: v for k, v in body.items() if k not in ("maxResults", "timeoutMs")}
        job = self._create_job(project, f"job_{uuid.uuid4().hex}", {"query": query_config})
        self._raise_job_error(job)
        if self.mode == "malformed":
            return self.malformed_body
        page_params = dict(params)
        if "maxResults" in body:
            page_params["maxResults"] = str(body["maxResults"])
        response = self._rows_response("bigquery#queryResponse", job, page_params)
        response["queryId"] = f"query_{job.job_id}"
        return response

    def _job(self, project: str, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.project != project:
            raise _HTTPError(404, "notFound", f"Not found: Job {project}:{LOCATION}.{job_id}")
        return job

    def _job_for_table(self, project: str, dataset: str, table: str) -> _Job:
        with self._lock:
            job_id = self._tables.get((project, dataset, table))
        if job_id is None:
            raise _not_found_table(f"{project}:{dataset}.{table}")
        return self._job(project, job_id)

    def _raise_job_error(self, job: _Job) -> None:
        if job.failed:
            error = _job_error_result(job)
            raise _HTTPError(400, error["reason"], error["message"])

    def _job_resource(self, job: _Job, *, read: bool) -> dict[str, Any]:
        if read:
            with self._lock:
                job.reads += 1
        done = job.reads > 0
        status: dict[str, Any] = {"state": "DONE" if done else "RUNNING"}
        if done and job.failed:
            error = _job_error_result(job)
            status["errorResult"] = error
            status["errors"] = [error]
        configuration = json.loads(json.dumps(job.configuration))
        query_config = configuration.setdefault("query", {})
        query_config.setdefault("destinationTable", dict(job.destination))
        query_config.setdefault("writeDisposition", "WRITE_TRUNCATE")
        query_config.setdefault("priority", "INTERACTIVE")
        configuration["jobType"] = "QUERY"
        statistics: dict[str, Any] = {
            "creationTime": str(job.created_ms),
            "startTime": str(job.created_ms + 1),
            "totalBytesProcessed": "0",
            "query": {"statementType": "SELECT", "totalBytesProcessed": "0"},
        }
        if done:
            statistics["endTime"] = str(job.created_ms + 2)
        return {
            "kind": "bigquery#job",
            "etag": _etag(job.job_id),
            "id": f"{job.project}:{LOCATION}.{job.job_id}",
            "selfLink": f"{self.url}{_API_PREFIX}/projects/{job.project}/jobs/{job.job_id}?location={LOCATION}",
            "user_email": "fake-bigquery@example.invalid",
            "configuration": configuration,
            "jobReference": job.reference,
            "statistics": statistics,
            "status": status,
            "principal_subject": "user:fake-bigquery@example.invalid",
            "jobCreationReason": {"code": "REQUESTED"},
        }

    def _page(self, job: _Job, params: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        total = len(job.rows)
        if "pageToken" in params:
            start = _decode_token(params["pageToken"], job.job_id)
        else:
            start = _int_param(params, "startIndex", 0)
        size = min(_int_param(params, "maxResults", self.page_size), self.page_size)
        end = min(start + max(size, 0), total)
        rows = [_encode_row(row) for row in job.rows[start:end]]
        token = _encode_token(job.job_id, end) if size > 0 and end < total else None
        return rows, token

    def _rows_response(self, kind: str, job: _Job, params: dict[str, str]) -> dict[str, Any]:
        rows, token = self._page(job, params)
        response: dict[str, Any] = {
            "kind": kind,
            "etag": _etag(job.job_id),
            "schema": _SCHEMA,
            "jobReference": job.reference,
            "totalRows": str(len(job.rows)),
            "totalBytesProcessed": "0",
            "jobComplete": True,
            "cacheHit": False,
        }
        if rows:
            response["rows"] = rows
        if token is not None:
            response["pageToken"] = token
        return response

    def _tabledata(self, job: _Job, params: dict[str, str]) -> dict[str, Any]:
        rows, token = self._page(job, params)
        response: dict[str, Any] = {
            "kind": "bigquery#tableDataList",
            "etag": _etag(job.job_id),
            "totalRows": str(len(job.rows)),
        }
        if rows:
            response["rows"] = rows
        if token is not None:
            response["pageToken"] = token
        return response

    def _table_resource(self, job: _Job) -> dict[str, Any]:
        ref = job.destination
        return {
            "kind": "bigquery#table",
            "etag": _etag(ref["tableId"]),
            "id": f"{ref['projectId']}:{ref['datasetId']}.{ref['tableId']}",
            "tableReference": dict(ref),
            "schema": _SCHEMA,
            "numRows": str(len(job.rows)),
            "numBytes": "0",
            "creationTime": str(job.created_ms),
            "lastModifiedTime": str(job.created_ms),
            "type": "TABLE",
            "location": LOCATION,
        }


# -- HTTP plumbing ----------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeBigQuery


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        status, content_type, payload = self.server.fake.handle(self.command, self.path, body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _route(method: str, path: str) -> tuple[str, list[str]]:
    if not path.startswith(_API_PREFIX + "/"):
        raise _HTTPError(404, "notFound", f"Not found: URL {path}")
    parts = path[len(_API_PREFIX) + 1 :].split("/")
    if len(parts) < 3 or parts[0] != "projects" or not parts[1]:
        raise _HTTPError(404, "notFound", f"Not found: URL {path}")
    project, rest = parts[1], parts[2:]
    routes: dict[tuple[str, int, str], str] = {
        ("POST", 1, "jobs"): "jobs.insert",
        ("GET", 2, "jobs"): "jobs.get",
        ("POST", 1, "queries"): "jobs.query",
        ("GET", 2, "queries"): "jobs.getQueryResults",
    }
    name = routes.get((method, len(rest), rest[0]))
    if name is not None:
        return name, [project, *rest[1:]]
    if method == "POST" and len(rest) == 3 and rest[0] == "jobs" and rest[2] == "cancel":
        return "jobs.cancel", [project, rest[1]]
    if method == "GET" and len(rest) in (4, 5) and rest[0] == "datasets" and rest[2] == "tables":
        if len(rest) == 4:
            return "tables.get", [project, rest[1], rest[3]]
        if rest[4] == "data":
            return "tabledata.list", [project, rest[1], rest[3]]
    raise _HTTPError(404, "notFound", f"Not found: URL {path}")


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise _HTTPError(400, "parseError", f"Invalid JSON payload received. {exc}") from exc


def _check_parameters(query: str, query_config: dict[str, Any], parameters: list[Any]) -> None:
    if query_config.get("useLegacySql") and parameters:
        raise _HTTPError(400, "invalidQuery", "Query parameters cannot be used in legacy SQL")
    names = {p.get("name") for p in parameters if isinstance(p, dict)}
    for name in _PARAM_IN_QUERY.findall(query):
        if name not in names:
            raise _HTTPError(400, "invalidQuery", f"Query parameter '{name}' not found at [1:1]")
    for param in parameters:
        if not (
            isinstance(param, dict)
            and isinstance(param.get("parameterType"), dict)
            and isinstance(param.get("parameterValue"), dict)
        ):
            raise _HTTPError(400, "invalid", f"Invalid query parameter: {param!r}")


def _job_error_result(job: _Job) -> dict[str, str]:
    return {
        "reason": "invalidQuery",
        "location": "query",
        "message": "Syntax error: Unexpected keyword WHERE at [1:42]",
    }


def _not_found_table(name: str) -> _HTTPError:
    return _HTTPError(404, "notFound", f"Not found: Table {name} was not found in location {LOCATION}")


def _encode_row(row: Row) -> dict[str, Any]:
    return {"f": [{"v": value} for value in row]}


def _encode_token(job_id: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{job_id}:{offset}".encode()).decode().rstrip("=")


def _decode_token(token: str, job_id: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        owner, _, offset = raw.rpartition(":")
        if owner == job_id and offset.isdigit():
            return int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise _HTTPError(400, "invalid", f"Invalid page token: {token}")


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise _HTTPError(400, "invalid", f"Invalid value for {name}: {value}") from exc
    if number < 0:
        raise _HTTPError(400, "invalid", f"Invalid value for {name}: {value}")
    return number


def _etag(seed: str) -> str:
    return base64.b64encode(seed.encode()[:12]).decode()


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
