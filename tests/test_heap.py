"""The heap's compaction (``background/heap.py``): after every row of ``memories`` was written
again in one statement, as a switch's move does, the rows at the heap's end move into the
pages freed before it and the emptied end is cut off; no row changes, no trigger fires."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.background.heap import STOPPED, HeapCompaction, compact_heap
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


# How closely the heap's order follows the namespaces' (1: a namespace's rows side by side, in
# the order of its index), as the planner prices an index scan of one.
_NAMESPACE_ORDER = (
    "SELECT correlation FROM pg_stats WHERE tablename = 'memories' AND attname = 'namespace'"
)


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


# Measured: 751 -> 1,500 -> 750 pages like-sized; mixed 1,055 -> 2,000 -> 1,080 (rows of
# 1.8-3.8 kB packed into the freed pages as they come, not as they fit best).
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
    # The rows were remembered with their namespaces interleaved, then moved in key order:
    # 0.90 measured in both cases.
    await connection.execute("ANALYZE memories")
    assert await connection.fetchval(_NAMESPACE_ORDER) >= 0.8
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
    assert done.stopped == STOPPED["compact"]
    assert await connection.fetchval(_ROWS_DIGEST) == digest


async def test_an_empty_store_rebuilds_its_graph_with_nothing_to_compact(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    assert await _pages(connection) == 0
    done = await _compacted(migrated_dsn)
    assert (done.pages_after, done.moved, done.stopped) == (0, 0, STOPPED["empty"])
    store = await MemoryStore.open(store_settings(worker=False), dsn=migrated_dsn)
    try:
        assert await store.index(rebuild=True) == 0
    finally:
        await store.close()


async def _grown(dsn: str, connection: asyncpg.Connection) -> int:
    """A heap of ``ROWS`` written again whole: its pages before."""
    await _remembered(dsn)
    await connection.execute("VACUUM memories")
    first = await _pages(connection)
    await connection.execute("UPDATE memories SET hnsw_indexed = hnsw_indexed")
    await connection.execute("VACUUM memories")
    return first


async def test_a_lone_row_on_a_roomy_last_page_is_written_until_it_leaves(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    first = await _grown(migrated_dsn, connection)
    # All but one row of the last page forgotten: the room left keeps a rewritten row there
    # (PostgreSQL keeps a new version on its page when it fits), so it is written again until
    # its own versions have filled that room.
    last = await _pages(connection) - 1
    await connection.execute(
        "DELETE FROM memories WHERE ctid >= format('(%s,2)', $1::bigint)::tid", last
    )
    await connection.execute("VACUUM memories")
    done = await _compacted(migrated_dsn)
    assert done.stopped == STOPPED["done"], done
    assert done.pages_after <= 1.02 * first, (first, done)


async def _waiting_for_a_lock(connection: asyncpg.Connection, pid: int) -> None:
    for _ in range(300):  # bounded: 30 s
        waiting = await connection.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the compaction never waited for a row")


async def _last_keys(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    """The namespace and id of the two rows last in the primary key's order: both in the
    compaction's last batch, the last one written last."""
    return await connection.fetch(
        "SELECT namespace, id FROM memories ORDER BY namespace DESC, id DESC LIMIT 2"
    )


async def test_a_row_another_transaction_holds_stops_the_compaction_and_keeps_every_row(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    await _grown(migrated_dsn, connection)
    digest = await connection.fetchval(_ROWS_DIGEST)
    last, _ = await _last_keys(connection)
    holder = await asyncpg.connect(migrated_dsn)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM memories WHERE namespace = $1 AND id = $2 FOR UPDATE", *last
            )
            done = await asyncio.wait_for(_compacted(migrated_dsn), 60)
    finally:
        await holder.close()
    # It gave way after LOCK_TIMEOUT instead of waiting for the holder, its last batch rolled
    # back: the batches before it are moved.
    assert done.stopped == STOPPED["locked"], done
    assert 0 < done.moved < ROWS
    assert done.pages_after <= done.pages_before
    assert await connection.fetchval(_ROWS_DIGEST) == digest


async def test_a_writer_of_two_rows_in_a_deadlock_with_the_compaction_commits(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    await _grown(migrated_dsn, connection)
    last, earlier = await _last_keys(connection)
    writer = await asyncpg.connect(migrated_dsn)
    pool = await create_pool(migrated_dsn, min_size=1, max_size=1)
    try:
        async with writer.transaction(), pool.acquire() as held:
            # The writer holds the last row, the compaction waits for it, holding the earlier
            # rows of its batch; the writer then asks for one of those: a cycle.
            await writer.execute(
                "UPDATE memories SET metadata = '{\"a\": 1}' WHERE namespace = $1 AND id = $2",
                *last,
            )
            pid = await held.fetchval("SELECT pg_backend_pid()")
            compaction = asyncio.create_task(compact_heap(held))
            await _waiting_for_a_lock(connection, pid)
            await writer.execute(
                "UPDATE memories SET metadata = '{\"b\": 1}' WHERE namespace = $1 AND id = $2",
                *earlier,
            )
            done = await asyncio.wait_for(compaction, 60)
    finally:
        await pool.close()
        await writer.close()
    assert done.stopped == STOPPED["locked"], done
    written = await connection.fetch(
        "SELECT metadata::text FROM memories WHERE (namespace, id) IN (($1, $2), ($3, $4))",
        *last,
        *earlier,
    )
    assert sorted(row[0] for row in written) == ['{"a": 1}', '{"b": 1}']


async def test_dead_rows_an_older_snapshot_holds_leave_the_heap_alone_until_it_goes(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    await _remembered(migrated_dsn)
    await connection.execute("VACUUM memories")
    first = await _pages(connection)
    reader = await asyncpg.connect(migrated_dsn)
    try:
        # A long reader (an export, pg_dump) whose snapshot is older than the move.
        async with reader.transaction(isolation="repeatable_read"):
            await reader.fetchval("SELECT count(*) FROM memories")
            await connection.execute("UPDATE memories SET hnsw_indexed = hnsw_indexed")
            done = await _compacted(migrated_dsn)
            # Held again, and let go within the waits (an autovacuum ANALYZE's moment).
            await connection.execute("UPDATE memories SET hnsw_indexed = hnsw_indexed")
            compaction = asyncio.create_task(_compacted(migrated_dsn))
            await asyncio.sleep(1.0)
        released = await asyncio.wait_for(compaction, 60)
    finally:
        await reader.close()
    assert done.stopped == STOPPED["held"], done
    assert (done.moved, done.pages_after) == (0, done.pages_before)
    assert released.stopped == STOPPED["done"], released
    assert released.seconds >= 1.0, released
    assert released.pages_after <= 1.02 * first, (first, released)


async def _compacted_beside_a_reader(dsn: str, holds_for: float | None) -> HeapCompaction:
    """``compact_heap`` while a reader's snapshot, taken after the move was vacuumed (an
    autovacuum ANALYZE, a report), is held for ``holds_for`` seconds (None: throughout)."""
    reader = await asyncpg.connect(dsn)
    try:
        async with reader.transaction(isolation="repeatable_read"):
            await reader.fetchval("SELECT count(*) FROM memories")
            compaction = asyncio.create_task(_compacted(dsn))
            if holds_for is None:
                return await asyncio.wait_for(compaction, 60)
            await asyncio.sleep(holds_for)
        return await asyncio.wait_for(compaction, 60)
    finally:
        await reader.close()


async def test_an_end_a_snapshot_keeps_is_cut_when_it_goes_or_left_to_autovacuum(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    first = await _grown(migrated_dsn, connection)
    digest = await connection.fetchval(_ROWS_DIGEST)

    # Held throughout: every row moved, the end not cut, and it says so.
    done = await _compacted_beside_a_reader(migrated_dsn, None)
    assert done.stopped == STOPPED["uncut"], done
    assert done.moved >= 0.9 * ROWS, done
    assert done.pages_after == done.pages_before
    # The next VACUUM (autovacuum's, called by the dead rows) cuts it.
    await connection.execute("VACUUM memories")
    assert await _pages(connection) <= 1.02 * first
    assert await connection.fetchval(_ROWS_DIGEST) == digest

    # Let go within the waits (3.75 s in all) after the first VACUUM: the next one cuts.
    await connection.execute("UPDATE memories SET hnsw_indexed = hnsw_indexed")
    await connection.execute("VACUUM memories")
    done = await _compacted_beside_a_reader(migrated_dsn, 1.0)
    assert done.stopped == STOPPED["done"], done
    assert done.seconds >= 1.0, done
    assert done.pages_after <= 1.02 * first, (first, done)
    assert await connection.fetchval(_ROWS_DIGEST) == digest
