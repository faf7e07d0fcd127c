"""The heap's compaction (``background/heap.py``): after every row of ``memories`` was written
again in one statement, as a switch's move does, the rows at the heap's end move into the
pages freed before it and the emptied end is cut off; no row changes, no trigger fires."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.background.heap import HeapCompaction, compact_heap
from pgrecall.db.pool import create_pool

from .conftest import store_settings
from .fakes import HashEmbedder

ROWS = 3000
_PAGES = "SELECT pg_relation_size('memories') / current_setting('block_size')::int"
# Every column of every row, in one digest.
_ROWS_DIGEST = "SELECT md5(string_agg(m::text, '|' ORDER BY namespace, id)) FROM memories m"
# What the triggers of memories keep or drop on an update (versions, postings, copies).
_KEPT_BY_TRIGGERS = """
    SELECT (SELECT count(*) FROM memory_versions), (SELECT count(*) FROM memory_terms),
           (SELECT count(*) FROM memory_vectors)
"""


@pytest.fixture
async def connection(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    opened = await asyncpg.connect(migrated_dsn)
    yield opened
    await opened.close()


def _note(i: int) -> str:
    return f"note {i} on topic {i % 13}"


def _mixed(i: int) -> str:
    """Every third note long: the median page's rows say less than the pages they fill."""
    words = " ".join(f"w{(i * 7 + n) % 997}" for n in range(120)) if i % 3 == 0 else ""
    return f"{_note(i)} {words}"


async def _remembered(dsn: str, content: Callable[[int], str] = _note) -> None:
    settings = store_settings(worker=False)
    store = await MemoryStore.open(settings, dsn=dsn, embedder=HashEmbedder())
    try:
        await store.remember(
            [MemoryInput(content=content(i), namespace=f"agent-{i % 4}") for i in range(ROWS)]
        )
        await store.index()
    finally:
        await store.close()


async def _pages(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval(_PAGES))


async def _compacted(dsn: str) -> HeapCompaction:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as held:
            return await compact_heap(held)
    finally:
        await pool.close()


# Measured: 751 -> 1,500 -> 750 pages like-sized; mixed 1,056-1,058 -> 2,000 -> 1,097-1,111
# (rows of 1.8-3.8 kB packed into the freed pages as they come, not as they fit best).
@pytest.mark.parametrize(
    ("content", "bound"), [(_note, 1.02), (_mixed, 1.1)], ids=["like-sized", "mixed"]
)
async def test_the_heap_written_again_whole_comes_back_to_its_size_with_every_row_unchanged(
    migrated_dsn: str,
    connection: asyncpg.Connection,
    content: Callable[[int], str],
    bound: float,
) -> None:
    await _remembered(migrated_dsn, content)
    await connection.execute("VACUUM memories")
    first = await _pages(connection)
    digest = await connection.fetchval(_ROWS_DIGEST)
    kept = tuple(await connection.fetchrow(_KEPT_BY_TRIGGERS))
    # As a switch's move: every row written again by one statement, then vacuumed.
    await connection.execute("UPDATE memories SET hnsw_indexed = hnsw_indexed")
    await connection.execute("VACUUM memories")
    grown = await _pages(connection)
    assert grown >= 1.8 * first, (first, grown)

    done = await _compacted(migrated_dsn)

    assert done.pages_before == grown
    assert done.pages_after == await _pages(connection)
    assert done.pages_after <= bound * first, (first, grown, done)
    assert done.moved >= 0.9 * ROWS, done
    assert await connection.fetchval(_ROWS_DIGEST) == digest
    assert tuple(await connection.fetchrow(_KEPT_BY_TRIGGERS)) == kept


async def test_a_heap_with_no_free_pages_is_left_as_it_is(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    await _remembered(migrated_dsn)
    await connection.execute("VACUUM memories")
    pages = await _pages(connection)
    digest = await connection.fetchval(_ROWS_DIGEST)
    done = await _compacted(migrated_dsn)
    assert (done.pages_before, done.pages_after) == (pages, pages)
    assert done.moved == 0
    assert await connection.fetchval(_ROWS_DIGEST) == digest
