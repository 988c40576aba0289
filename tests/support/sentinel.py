"""A Redis primary, a replica and three Sentinels on loopback, for failover tests."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from cachemgmt.cache.failover import NO_RETRY
from tests.support.processes import RedisServer, free_port, terminate, wait_for_port
from tests.support.services import service_missing

# django-redis keeps one pool per cache location for the life of the process: each group
# monitors a service of its own name, so a test never reaches an earlier group's pool.
_groups = itertools.count(1)


def _until(predicate: Any, *, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def _quiet(fn: Any, default: Any = None) -> Any:
    try:
        return fn()
    except (redis.RedisError, OSError):
        return default


@dataclass
class SentinelSet:
    """Primary + replica + three Sentinels (quorum 2, down after 1 s); ``remove`` stops them all."""

    servers: dict[int, RedisServer] = field(default_factory=dict)
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workdir: str = ""
    service: str = ""
    password: str | None = None

    @classmethod
    def started(cls, *, password: str | None = None) -> SentinelSet:
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server is not installed")
        group = cls(
            workdir=tempfile.mkdtemp(prefix="sentinel-"),
            service=f"authctx-{os.getpid()}-{next(_groups)}",
            password=password,
        )
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        primary = RedisServer(port=free_port(), workdir=tempfile.mkdtemp(prefix="sentinel-primary-"), extra=auth)
        primary.start()
        group.servers[primary.port] = primary
        replica = RedisServer(
            port=free_port(),
            workdir=tempfile.mkdtemp(prefix="sentinel-replica-"),
            extra=["--replicaof", "127.0.0.1", str(primary.port), *auth],
        )
        replica.start()
        group.servers[replica.port] = replica
        group.wait_replicated(replica.port)
        for index in range(3):
            port = free_port()
            conf = os.path.join(group.workdir, f"sentinel-{index}.conf")
            with open(conf, "w", encoding="utf-8") as handle:
                handle.write(
                    f"port {port}\nbind 127.0.0.1\ndir {group.workdir}\n"
                    f"logfile {os.path.join(group.workdir, f'sentinel-{index}.log')}\n"
                    f"sentinel monitor {group.service} 127.0.0.1 {primary.port} 2\n"
                    f"sentinel down-after-milliseconds {group.service} 1000\n"
                    f"sentinel failover-timeout {group.service} 3000\n"
                    f"sentinel parallel-syncs {group.service} 1\n"
                    + (f"sentinel auth-pass {group.service} {password}\n" if password else "")
                )
            proc = subprocess.Popen([binary, conf, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for_port(port, proc=proc)
            group.sentinel_ports.append(port)
            group.sentinels.append(proc)
        _until(group._sentinels_agree, timeout=20, what="the Sentinels to discover each other and the replica")
        return group

    # -- views -------------------------------------------------------------------------------

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], socket_timeout=1, decode_responses=True)

    def primary_port(self) -> int | None:
        for index in range(len(self.sentinel_ports)):
            address = _quiet(lambda i=index: self.sentinel(i).sentinel_get_master_addr_by_name(self.service))
            if address:
                return int(address[1])
        return None

    def server(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=1, decode_responses=True)

    def replica_ports(self) -> list[int]:
        primary = self.primary_port()
        return [port for port, server in self.servers.items() if port != primary and server.proc is not None]

    def _sentinels_agree(self) -> bool:
        for index in range(len(self.sentinel_ports)):
            master = _quiet(lambda i=index: self.sentinel(i).sentinel_master(self.service), {})
            if int(master.get("num-other-sentinels", 0)) < 2 or int(master.get("num-slaves", 0)) < 1:
                return False
        return True

    def wait_switched(self, port: int, timeout: float = 30.0) -> float:
        """Seconds until every Sentinel's configuration names ``port`` as the primary (what
        clients discover: ``SENTINEL MASTER``; the promoted address alone shows earlier)."""

        def switched() -> bool:
            return all(
                int(_quiet(lambda i=index: self.sentinel(i).sentinel_master(self.service), {}).get("port", 0)) == port
                for index in range(len(self.sentinel_ports))
            )

        return _until(switched, timeout=timeout, what=f"the Sentinels to switch to {port}")

    def wait_replicated(self, port: int, timeout: float = 20.0) -> None:
        """Until ``port`` is a replica whose link to its primary is up."""
        _until(
            lambda: _quiet(lambda: self.server(port).info("replication").get("master_link_status"), "") == "up",
            timeout=timeout,
            what=f"the replica on {port} to sync",
        )

    def env(self) -> dict[str, str]:
        """The environment of a process using this group (instead of ``REDIS_URL``)."""
        env = {
            "REDIS_URL": "",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports),
            "REDIS_SENTINEL_SERVICE": self.service,
        }
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        return env

    # -- faults ------------------------------------------------------------------------------

    def failover(self) -> int:
        """``SENTINEL FAILOVER``; returns the old primary's port."""
        old = self.primary_port()
        assert old is not None
        self.sentinel().execute_command("SENTINEL", "FAILOVER", self.service)
        return old

    def kill_primary(self) -> int:
        """``kill -9`` of the primary; returns its port."""
        old = self.primary_port()
        assert old is not None
        self.servers[old].stop()
        return old

    def wait_promoted(self, old: int, timeout: float = 30.0) -> float:
        """Seconds until Sentinel names a primary other than ``old`` that says it is one."""

        def promoted() -> bool:
            port = self.primary_port()
            return port not in (None, old) and _quiet(lambda: self.server(port).info("replication")["role"]) == "master"

        return _until(promoted, timeout=timeout, what="a new primary")

    def remove(self) -> None:
        for proc in self.sentinels:
            terminate(proc, timeout=5)
        for server in self.servers.values():
            server.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)


def use_sentinel(settings: Any, group: SentinelSet, *, timeout: float = 0.25) -> None:
    """Point this process's cache at ``group`` the way ``REDIS_SENTINELS`` does in settings."""
    sentinels = [("127.0.0.1", port) for port in group.sentinel_ports]
    settings.REDIS_URL = None
    settings.REDIS_SENTINELS = sentinels
    settings.REDIS_SENTINEL_SERVICE = group.service
    settings.REDIS_SENTINEL_DB = 0
    settings.REDIS_PASSWORD = group.password
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{group.service}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "CONNECTION_POOL_CLASS": "cachemgmt.cache.failover.FencedSentinelConnectionPool",
                "SENTINELS": sentinels,
                "SENTINEL_KWARGS": {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": NO_RETRY},
                "SOCKET_CONNECT_TIMEOUT": timeout,
                "SOCKET_TIMEOUT": timeout,
                "PASSWORD": group.password,
                "CONNECTION_POOL_KWARGS": {"max_connections": 50, "retry_on_timeout": False},
            },
        }
    }
