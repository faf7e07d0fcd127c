from __future__ import annotations

import hashlib

import asyncpg
import pytest

from pgrecall.db import inspect

from .conftest import TEST_DIMENSIONS


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def _insert(
    connection: asyncpg.Connection,
    namespace: str,
    content: str,
    *,
    key: str | None = None,
    metadata: str = "{}",
) -> None:
    await connection.execute(
        "INSERT INTO memories (namespace, content, content_hash, key, metadata) "
        "VALUES ($1, $2, $3, $4, $5::jsonb)",
        namespace,
        content,
        _digest(content),
        key,
        metadata,
    )


async def test_vector_column_has_the_configured_size(connection: asyncpg.Connection) -> None:
    report = await inspect.describe(connection)
    assert report.vector_dimensions == TEST_DIMENSIONS
    assert report.pgvector_version is not None
    storage = await connection.fetchval(
        "SELECT attstorage::text FROM pg_attribute "
        "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
    )
    assert storage == "p"  # PLAIN: vectors stay in the row


async def test_a_memory_row_stays_in_one_piece(connection: asyncpg.Connection) -> None:
    options = await connection.fetchval(
        "SELECT reloptions FROM pg_class WHERE relname = 'memories'"
    )
    assert "toast_tuple_target=8160" in options
    await connection.execute(
        "INSERT INTO memories (namespace, content, content_hash, metadata) "
        "VALUES ('n', $1, sha256('x'::bytea), $2::jsonb)",
        # Distinct random-looking words: neither the text nor its tsvector compress.
        " ".join(hashlib.sha256(str(i).encode()).hexdigest()[:12] for i in range(100)),
        '{"speaker": "user", "turn": 7, "session": "s1"}',
    )
    # A row of ~4 kB (tsvector included) is stored inline: nothing went to the TOAST table.
    toasted = await connection.fetchval(
        "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'memories'"
    )
    assert toasted == 0


async def test_indexes(connection: asyncpg.Connection) -> None:
    definitions = {
        row["indexname"]: row["indexdef"]
        for row in await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories'"
        )
    }
    assert (
        "USING hnsw (((embedding)::vector(384)) vector_ip_ops)"
        in definitions["memories_embedding_hnsw"]
    )
    assert definitions["memories_embedding_hnsw"].endswith("WHERE hnsw_indexed")
    assert "USING gin (metadata jsonb_path_ops)" in definitions["memories_metadata_gin"]
    assert "(namespace, created_at, id)" in definitions["memories_namespace_created_at"]
    assert definitions["memories_namespace_content_hash_key"].startswith("CREATE UNIQUE INDEX")
    assert (
        "(namespace, content_hash) WHERE (key IS NULL)"
        in (definitions["memories_namespace_content_hash_key"])
    )
    assert "(namespace, key) WHERE (key IS NOT NULL)" in definitions["memories_namespace_key_key"]
    assert "(namespace, id)" in definitions["memories_pkey"]


async def test_every_unique_constraint_leads_with_namespace(
    connection: asyncpg.Connection,
) -> None:
    rows = await connection.fetch(
        """
        SELECT i.indexrelid::regclass::text AS name, a.attname AS first_column
        FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'memories'::regclass AND i.indisunique
        """
    )
    assert len(rows) == 3  # pkey, content hash, key
    assert {row["first_column"] for row in rows} == {"namespace"}


async def test_same_text_is_unique_per_namespace(connection: asyncpg.Connection) -> None:
    await _insert(connection, "agent-a", "the user likes green tea")
    await _insert(connection, "agent-b", "the user likes green tea")
    with pytest.raises(asyncpg.UniqueViolationError):
        await _insert(connection, "agent-a", "the user likes green tea")
    # A keyed memory is identified by its key, not its text.
    await _insert(connection, "agent-a", "the user likes green tea", key="drink")
    with pytest.raises(asyncpg.UniqueViolationError):
        await _insert(connection, "agent-a", "something else", key="drink")
    assert await connection.fetchval("SELECT count(*) FROM memories") == 3


async def test_metadata_must_be_an_object(connection: asyncpg.Connection) -> None:
    for bad in ("[1, 2]", '"text"', "3", "null"):
        with pytest.raises(asyncpg.CheckViolationError, match="memories_metadata_is_object"):
            await _insert(connection, "ns", f"memory {bad}", metadata=bad)
    await _insert(connection, "ns", "fine", metadata='{"kind": "fact"}')


async def test_namespace_must_not_be_empty(connection: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="memories_namespace_not_empty"):
        await _insert(connection, "", "orphan")


async def test_an_embedding_needs_its_space(connection: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="memories_embedding_has_space"):
        await connection.execute(
            "INSERT INTO memories (namespace, content, content_hash, embedding, status) "
            "VALUES ('ns', 'x', $1, $2::vector, 'embedded')",
            _digest("x"),
            "[" + ",".join(["0.1"] * TEST_DIMENSIONS) + "]",
        )


async def test_wrong_vector_size_is_refused(connection: asyncpg.Connection) -> None:
    space_id = await connection.fetchval(
        "INSERT INTO embedding_spaces (kind, model, dimensions, document_prefix, query_prefix, "
        "embedder_version) VALUES ('local', 'm', 3, '', '', '') RETURNING id"
    )
    # The column takes any size since 0012; the check keeps it to the active space's.
    with pytest.raises(asyncpg.CheckViolationError, match="memories_embedding_size"):
        await connection.execute(
            "INSERT INTO memories (namespace, content, content_hash, embedding, space_id, status) "
            "VALUES ('ns', 'x', $1, '[1,0,0]'::vector, $2, 'embedded')",
            _digest("x"),
            space_id,
        )


async def test_status_follows_the_vector(connection: asyncpg.Connection) -> None:
    await _insert(connection, "ns", "waiting")
    row = await connection.fetchrow("SELECT status, embed_attempts, embed_after FROM memories")
    assert row["status"] == "pending"
    assert row["embed_attempts"] == 0
    assert row["embed_after"] is not None
    with pytest.raises(asyncpg.CheckViolationError, match="memories_embedded_has_vector"):
        await connection.execute("UPDATE memories SET status = 'embedded'")
    with pytest.raises(asyncpg.CheckViolationError, match="memories_status_known"):
        await connection.execute("UPDATE memories SET status = 'lost'")
