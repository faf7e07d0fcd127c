"""Read what a database holds: server and pgvector versions, vector size, indexes."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.schema import HNSW_INDEX, MEMORIES


@dataclass(frozen=True, slots=True)
class SchemaReport:
    """What ``pgrecall migrate`` reports after upgrading."""

    server_version: str
    pgvector_version: str | None
    vector_dimensions: int | None
    indexes: tuple[str, ...]


async def on_citus(connection: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]) -> bool:
    """Whether this database has the ``citus`` extension (its statements then run on shards)."""
    found = await connection.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
    return found is not None


async def vector_dimensions(
    connection: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record],
) -> int | None:
    """The size of the store's vectors, or None when the table does not exist: that of the HNSW
    index's expression (``embedding::vector(N)``, migration 0012), or of the column where it
    still has one (before 0012)."""
    value = await connection.fetchval(
        """
        SELECT coalesce(
            (SELECT a.atttypmod FROM pg_attribute a
             WHERE a.attrelid = to_regclass($2) AND a.attnum = 1 AND a.atttypmod > 0),
            (SELECT a.atttypmod FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attname = 'embedding'
               AND NOT a.attisdropped AND a.atttypmod > 0))
        """,
        MEMORIES,
        HNSW_INDEX,
    )
    return int(value) if value is not None else None


async def describe(connection: asyncpg.Connection) -> SchemaReport:
    """A report of the schema as the server has it."""
    server_version = await connection.fetchval("SHOW server_version")
    pgvector_version = await connection.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
    )
    index_rows = await connection.fetch(
        "SELECT indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname", MEMORIES
    )
    return SchemaReport(
        server_version=str(server_version),
        pgvector_version=pgvector_version,
        vector_dimensions=await vector_dimensions(connection),
        indexes=tuple(str(row["indexdef"]) for row in index_rows),
    )
