"""A PgBouncer of the test's own, in transaction mode, in front of the test run's PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.processes import free_port, terminate, wait_for_port
from tests.support.services import service_missing

BINARY_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


@dataclass
class PgBouncer:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def started(cls, *, upstream_host: str, upstream_port: int, user: str) -> PgBouncer:
        binary = shutil.which("pgbouncer") or next((p for p in BINARY_PATHS if os.access(p, os.X_OK)), None)
        if binary is None:
            service_missing("pgbouncer is not installed (scripts/test.sh installs Debian's)")
        workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        workdir.chmod(0o777)  # it refuses to run as root: as nobody, it writes its log and pid here
        bouncer = cls(port=free_port(), workdir=workdir)
        (workdir / "userlist.txt").write_text(f'"{user}" ""\n', encoding="utf-8")
        (workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={upstream_host} port={upstream_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {bouncer.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n"
            "server_reset_query =\nignore_startup_parameters = extra_float_digits,options\n"
            f"admin_users = {user}\n"
            f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n",
            encoding="utf-8",
        )
        args = [binary, str(workdir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            args[1:1] = ["-u", "nobody"]
        bouncer.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(bouncer.port, proc=bouncer.proc)
        return bouncer

    def admin(self, command: str, user: str) -> list[tuple[object, ...]]:
        """A command on PgBouncer's admin console (``SHOW POOLS``, ...)."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            dbname="pgbouncer",
            autocommit=True,
            cursor_factory=psycopg.ClientCursor,  # the admin console speaks the simple protocol only
        ) as conn:
            return list(conn.execute(command).fetchall())

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def remove(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)
