from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from pgrecall.db import inspect, migrate
from pgrecall.db.schema import build_metadata
from pgrecall.errors import SchemaError

from .conftest import TEST_DIMENSIONS

REPO = Path(__file__).resolve().parents[1]


async def _tables(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


@pytest.mark.engines
async def test_upgrade_downgrade_upgrade(empty_dsn: str) -> None:
    assert await migrate.current_revision(empty_dsn) is None
    await migrate.upgrade(empty_dsn, TEST_DIMENSIONS)
    assert await migrate.current_revision(empty_dsn) == migrate.head_revision()
    assert {"memories", "embedding_spaces"} <= await _tables(empty_dsn)

    await migrate.downgrade(empty_dsn, "base")
    assert await migrate.current_revision(empty_dsn) is None
    assert not {"memories", "embedding_spaces"} & await _tables(empty_dsn)

    await migrate.upgrade(empty_dsn, TEST_DIMENSIONS)
    assert await migrate.current_revision(empty_dsn) == migrate.head_revision()


@pytest.mark.engines
async def test_upgrade_at_head_is_a_no_op(migrated_dsn: str) -> None:
    await migrate.upgrade(migrated_dsn, TEST_DIMENSIONS)
    assert await migrate.current_revision(migrated_dsn) == migrate.head_revision()


async def test_concurrent_migrations_do_not_collide(empty_dsn: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from pgrecall.db import migrate\n"
        f"asyncio.run(migrate.upgrade(sys.argv[1], {TEST_DIMENSIONS}))\n"
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, empty_dsn, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    in_process = [migrate.upgrade(empty_dsn, TEST_DIMENSIONS) for _ in range(2)]
    results = await asyncio.gather(*(p.communicate() for p in processes), *in_process)
    for process, (_, stderr) in zip(processes, results, strict=False):
        assert process.returncode == 0, stderr
    connection = await asyncpg.connect(empty_dsn)
    try:
        versions = await connection.fetch("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    assert [row["version_num"] for row in versions] == [migrate.head_revision()]


async def test_a_migration_that_loses_its_connection_is_one_line_and_exit_2(
    empty_dsn: str,
) -> None:
    """The migration waits on the advisory lock a test connection holds; its backend is then
    terminated: the CLI says so in one line (no log line of its own before it) and exits 2."""
    holder = await asyncpg.connect(empty_dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrate.MIGRATION_LOCK_KEY)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
        environment = {**clean, "PGRECALL_DATABASE_URL": empty_dsn, "PGRECALL_EMBEDDER": "local"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pgrecall.cli",
            "migrate",
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        waiting = None
        for _ in range(1200):  # up to two minutes on a loaded machine
            waiting = await holder.fetchval(
                """SELECT pid FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()
                     AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'"""
            )
            if waiting is not None or process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert waiting is not None, "the migration never waited on the lock"
        await holder.execute("SELECT pg_terminate_backend($1)", waiting)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        await holder.close()
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot migrate"), lines
    assert "the connection was lost" in lines[0]


async def test_migrated_database_matches_schema_module(migrated_dsn: str) -> None:
    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(migrated_dsn)
    )

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, build_metadata(TEST_DIMENSIONS)))

    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(differences)
    finally:
        await engine.dispose()
    assert diff == []


@pytest.mark.parametrize(
    ("available", "installed", "problem"),
    [
        (None, None, "not installed"),
        ("0.7.4", None, "too old"),
        ("0.8.0", "0.5.1", "too old"),
    ],
)
def test_old_or_missing_pgvector_is_refused(
    available: str | None, installed: str | None, problem: str
) -> None:
    with pytest.raises(SchemaError, match=problem):
        migrate.require_pgvector(available, installed)


def test_current_pgvector_is_accepted() -> None:
    migrate.require_pgvector("0.8.0", None)
    migrate.require_pgvector("0.8.6", "0.8.6")
    migrate.require_pgvector("0.10.0", "0.10.0")


async def test_alembic_command_line_uses_settings(empty_dsn: str) -> None:
    environment = {
        **os.environ,
        "PGRECALL_DATABASE_URL": empty_dsn,
        "PGRECALL_EMBED_MODEL": "nomic-embed-text",
    }
    for arguments in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"]):
        completed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "alembic", *arguments],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
    connection = await asyncpg.connect(empty_dsn)
    try:
        # The store's size: the graph's expression since 0012 (the column has none).
        dimensions = await inspect.vector_dimensions(connection)
    finally:
        await connection.close()
    assert dimensions == 768


async def test_unembedded_rows_become_pending_on_upgrade(empty_dsn: str) -> None:
    await migrate.upgrade(empty_dsn, TEST_DIMENSIONS, revision="0002")
    connection = await asyncpg.connect(empty_dsn)
    try:
        await connection.execute(
            "INSERT INTO memories (namespace, content, content_hash) "
            "VALUES ('ns', 'no vector yet', sha256('no vector yet'::bytea))"
        )
        await migrate.upgrade(empty_dsn, TEST_DIMENSIONS)
        status = await connection.fetchval("SELECT status FROM memories")
    finally:
        await connection.close()
    assert status == "pending"


async def test_versions_migration_keeps_todays_rows_as_first_versions(empty_dsn: str) -> None:
    """0011 on a database with memories: each becomes its first, current version; changing one
    then keeps the old text; a downgrade keeps the memories (their versions go) and the
    upgrade after it works on the same data."""
    await migrate.upgrade(empty_dsn, TEST_DIMENSIONS, revision="0010")
    connection = await asyncpg.connect(empty_dsn)
    try:
        await connection.execute(
            "INSERT INTO memories (namespace, content, content_hash, key) VALUES "
            "('ns', 'first text', sha256('first text'::bytea), 'k'), "
            "('ns', 'other text', sha256('other text'::bytea), NULL)"
        )
        await migrate.upgrade(empty_dsn, TEST_DIMENSIONS)
        rows = await connection.fetch(
            "SELECT version, version_since, valid_until FROM memories ORDER BY content"
        )
        assert [tuple(row) for row in rows] == [(1, None, None), (1, None, None)]
        assert await connection.fetchval("SELECT count(*) FROM memory_versions") == 0
        await connection.execute(
            "UPDATE memories SET content = 'second text', "
            "content_hash = sha256('second text'::bytea), updated_at = clock_timestamp() "
            "WHERE key = 'k'"
        )
        kept = await connection.fetchrow("SELECT version, content FROM memory_versions")
        assert tuple(kept) == (1, "first text")
        assert await connection.fetchval("SELECT version FROM memories WHERE key = 'k'") == 2

        await migrate.downgrade(empty_dsn, "0010")
        assert await connection.fetchval("SELECT to_regclass('memory_versions')") is None
        contents = await connection.fetch("SELECT content FROM memories ORDER BY content")
        assert [row["content"] for row in contents] == ["other text", "second text"]

        await migrate.upgrade(empty_dsn, TEST_DIMENSIONS)
        versions = await connection.fetch("SELECT version FROM memories")
        assert [row["version"] for row in versions] == [1, 1]
        assert await connection.fetchval("SELECT count(*) FROM memory_audit") == 0
    finally:
        await connection.close()
