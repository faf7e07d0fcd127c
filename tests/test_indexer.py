"""The partial HNSW graph: large namespaces enter it in the background, recall is right before,
during and after, small namespaces never enter it, and bulk rebuilds produce the same index."""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np

from pgrecall import MemoryStore

from .conftest import store_settings
from .fakes import HashEmbedder, text_vector

THRESHOLD = 300
LARGE = 1200


async def _open(dsn: str, **overrides: object) -> MemoryStore:
    settings = store_settings(exact_scan_max_rows=THRESHOLD, ingest_chunk_size=500, **overrides)
    return await MemoryStore.open(settings, dsn=dsn, embedder=HashEmbedder())


async def _flagged(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT namespace, count(*) AS n FROM memories WHERE hnsw_indexed GROUP BY namespace"
    )
    return {row["namespace"]: row["n"] for row in rows}


def _true_top(texts: list[str], query: str, k: int) -> list[str]:
    scores = np.stack([text_vector(text) for text in texts]) @ text_vector(query)
    return [texts[i] for i in np.argsort(-scores, kind="stable")[:k]]


async def test_writes_do_not_touch_the_graph_and_recall_is_exact_before_indexing(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    store = await _open(migrated_dsn, worker=False)
    try:
        texts = [f"large memory {i}" for i in range(LARGE)]
        await store.remember(texts, namespace="large")
        assert await _flagged(connection) == {}
        result = await store.recall("large memory 7?", namespace="large", k=10, mode="vector")
        assert not result.exact  # the HNSW plan, whose unindexed half is an exact scan
        assert [hit.content for hit in result] == _true_top(texts, "large memory 7?", 10)
    finally:
        await store.close()


async def test_only_large_namespaces_enter_the_graph_and_new_rows_are_found_at_once(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    store = await _open(migrated_dsn, worker=False)
    try:
        await store.remember([f"large memory {i}" for i in range(LARGE)], namespace="large")
        await store.remember([f"small memory {i}" for i in range(THRESHOLD)], namespace="small")
        assert await store.index() == LARGE
        assert await _flagged(connection) == {"large": LARGE}
        assert await store.index() == 0  # nothing left behind

        # Written after indexing: outside the graph, yet the best hit at once.
        fresh = "a fresh memory about lighthouses"
        await store.remember(fresh, namespace="large")
        result = await store.recall(fresh, namespace="large", k=5, mode="vector")
        assert result.hits[0].content == fresh
        # A namespace that was large keeps entering the graph, a row at a time.
        assert await store.index() == 1
        assert await _flagged(connection) == {"large": LARGE + 1}
    finally:
        await store.close()


async def test_index_waits_for_a_batch_another_worker_holds(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    """A worker's batch, claimed and not yet committed, is what index() used to skip and return
    before; it now waits for it, and moves the rows itself when that batch rolls back."""
    store = await _open(migrated_dsn, worker=False, index_batch_size=100)
    try:
        await store.remember([f"large memory {i}" for i in range(LARGE)], namespace="large")
        assert await store.index() == LARGE
        # The only rows left are the batch a worker holds: index() has nothing else to do.
        await store.remember([f"late memory {i}" for i in range(100)], namespace="large")
        worker = store.indexer.batch_sql.format(locking="FOR UPDATE SKIP LOCKED")
        held = connection.transaction()
        await held.start()
        assert await connection.execute(worker, "large", 100) == "UPDATE 100"
        indexing = asyncio.ensure_future(store.index())
        done, _ = await asyncio.wait({indexing}, timeout=1.5)
        assert not done, "index() returned while a worker's batch was still open"
        await held.rollback()  # the worker died: its 100 rows are index()'s to move
        assert await asyncio.wait_for(indexing, 60) == 100
        assert await _flagged(connection) == {"large": LARGE + 100}
    finally:
        await store.close()


async def test_the_plan_uses_the_partial_index(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    store = await _open(migrated_dsn, worker=False)
    try:
        await store.remember([f"large memory {i}" for i in range(LARGE)], namespace="large")
        await store.index()
        await connection.execute("ANALYZE memories")
        plan = "\n".join(
            row[0]
            for row in await connection.fetch(
                # The graph is on the vectors cast to their size (migration 0012), as recall
                # orders its graph branch (recall/sql.nearest).
                """EXPLAIN SELECT id FROM memories m WHERE m.hnsw_indexed
                   AND m.namespace = ANY('{large}') AND m.embedding IS NOT NULL
                   ORDER BY (m.embedding::vector(384)) <#> (SELECT embedding FROM memories LIMIT 1)
                   LIMIT 40"""
            )
        )
        assert "memories_embedding_hnsw" in plan
    finally:
        await store.close()


async def test_the_worker_indexes_in_the_background(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    store = await _open(migrated_dsn, worker=True, index_sweep_seconds=0.2, index_batch_size=100)
    try:
        await store.remember([f"large memory {i}" for i in range(LARGE)], namespace="large")
        for _ in range(200):  # bounded: 20 s at most
            if (await _flagged(connection)).get("large") == LARGE:
                break
            await asyncio.sleep(0.1)
        assert await _flagged(connection) == {"large": LARGE}
    finally:
        await store.close()


async def test_rebuild_flags_everything_and_recreates_the_same_index(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    definition = "SELECT indexdef FROM pg_indexes WHERE indexname = 'memories_embedding_hnsw'"
    before = await connection.fetchval(definition)
    store = await _open(migrated_dsn, worker=False)
    try:
        texts = [f"large memory {i}" for i in range(LARGE)]
        await store.remember(texts, namespace="large")
        await store.remember([f"small memory {i}" for i in range(50)], namespace="small")
        assert await store.index(rebuild=True) == LARGE
        assert await _flagged(connection) == {"large": LARGE}
        assert await connection.fetchval(definition) == before
        overlap = []
        for query in (f"question {i}" for i in range(5)):
            hits = await store.recall(query, namespace="large", k=10, mode="vector")
            truth = set(_true_top(texts, query, 10))
            overlap.append(len({hit.content for hit in hits} & truth) / 10)
        assert sum(overlap) / len(overlap) >= 0.9
    finally:
        await store.close()
