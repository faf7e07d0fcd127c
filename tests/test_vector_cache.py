"""The process's cache of a copied namespace's vectors (issue 25, recall/vector_cache.py): recall
given the cached candidates ranks exactly as the copied plan scanning every copy in PostgreSQL,
through writes, copies written since the cache was read, replaced copies, updates, forgets,
expiry and invalidation; an answer it cannot prove runs the copied plan; numpy's distances lie
within the proof's error bound of pgvector's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import numpy as np
import pytest
from asyncpg.connection import LoggedQuery

from pgrecall import MemoryStore
from pgrecall.db.pool import create_pool
from pgrecall.db.vectors import register_vector_codec
from pgrecall.recall import process_cache, vector_cache
from pgrecall.recall.vector_cache import SPARE_CANDIDATES, VectorCache

from .conftest import store_settings
from .fakes import DIMENSIONS, HashEmbedder, text_vector

NAMESPACE = "kb"
ROWS = 400
QUERIES = [f"topic {i} and word{i % 7}" for i in range(20)]


async def _store(
    dsn: str, sent: list[LoggedQuery] | None = None, **settings: object
) -> MemoryStore:
    """A store whose namespaces get copies from 100 rows; with ``sent``, on a pool whose
    statements are logged there."""
    chosen = store_settings(
        worker=False, vector_copy_min_rows=100, keyword_postings_min_rows=100, **settings
    )
    if sent is None:
        return await MemoryStore.open(chosen, dsn=dsn, embedder=HashEmbedder())
    pool = await create_pool(dsn, min_size=3, max_size=3)
    async with AsyncExitStack() as held:  # every connection of the pool at once
        for _ in range(3):
            connection = await held.enter_async_context(pool.acquire())
            connection.add_query_logger(sent.append)
    resources = AsyncExitStack()
    resources.push_async_callback(pool.close)
    return MemoryStore(chosen, pool, dsn, HashEmbedder(), resources)


async def _answers(store: MemoryStore, query: str, k: int = 10) -> list[list[tuple[str, float]]]:
    """The vector and hybrid answers to ``query``: (content, score) best first."""
    answers = []
    for mode in ("vector", "hybrid"):
        result = await store.recall(query, namespace=NAMESPACE, k=k, mode=mode)  # type: ignore[arg-type]
        answers.append([(hit.content, round(hit.score, 6)) for hit in result])
    return answers


def _cached_statements(sent: list[LoggedQuery]) -> int:
    return sum("v.id = ANY(" in logged.query for logged in sent)


async def _until_cached(store: MemoryStore, sent: list[LoggedQuery]) -> None:
    """Recall until a statement is given cached candidates (the first recall starts the load
    in the background); at most 200 tries, 20 ms apart."""
    for _ in range(200):
        sent.clear()
        await store.recall(QUERIES[0], namespace=NAMESPACE, k=5, mode="vector")
        if _cached_statements(sent):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the namespace's copies were never cached")


@contextlib.asynccontextmanager
async def _stores(
    dsn: str, **settings: object
) -> AsyncIterator[tuple[MemoryStore, MemoryStore, list[LoggedQuery]]]:
    """A store that caches the copies (its statements logged) and one that scans them in
    PostgreSQL, both with ``settings``, on the same database, its namespace copied."""
    sent: list[LoggedQuery] = []
    cached = await _store(dsn, sent, **settings)
    scanned = await _store(dsn, vector_cache_mb=0, **settings)
    try:
        texts = [f"note {i} on topic {i % 17} with word{i % 29}" for i in range(ROWS)]
        await cached.remember(texts, namespace=NAMESPACE)
        await cached.index()
        await _until_cached(cached, sent)
        yield cached, scanned, sent
    finally:
        await cached.close()
        await scanned.close()


@pytest.fixture
async def stores(
    migrated_dsn: str,
) -> AsyncIterator[tuple[MemoryStore, MemoryStore, list[LoggedQuery]]]:
    async with _stores(migrated_dsn) as both:
        yield both


async def _invalidate(connection: asyncpg.Connection, ids: list[Any]) -> None:
    """End the validity of these memories (as a newer fact superseding them would)."""
    await connection.execute(
        "UPDATE memories SET valid_until = now() - interval '1 second' WHERE id = ANY($1)", ids
    )


def _vector_statements(sent: list[LoggedQuery]) -> list[str]:
    """The logged statements that read the vector copies."""
    return [logged.query for logged in sent if "memory_vectors" in logged.query]


async def _same(cached: MemoryStore, scanned: MemoryStore, queries: list[str]) -> None:
    for query in queries:
        assert await _answers(cached, query) == await _answers(scanned, query), query


# Hybrid recall's four paths (recall/service.py), each given the cached candidates.
HYBRID_PATHS = pytest.mark.parametrize(
    "settings",
    [
        # BM25 in Python, split (two connections) when alone: not with the postings cached.
        {"keyword_cache_mb": 0},
        {"hybrid_split": False},  # the cached ranking in the winners' statement
        {"keyword_scoring": "sql"},  # split, BM25 in SQL
        {"keyword_scoring": "sql", "hybrid_split": False},  # the one statement
    ],
    ids=["python-split", "python-one", "sql-split", "sql-one"],
)


@HYBRID_PATHS
async def test_cached_candidates_rank_as_the_scan_of_every_copy_through_writes(
    migrated_dsn: str, connection: asyncpg.Connection, settings: dict[str, object]
) -> None:
    async with _stores(migrated_dsn, **settings) as (cached, scanned, sent):
        await _rank_as_the_scan_through_writes(cached, scanned, sent, connection)


async def _rank_as_the_scan_through_writes(
    cached: MemoryStore,
    scanned: MemoryStore,
    sent: list[LoggedQuery],
    connection: asyncpg.Connection,
) -> None:
    sent.clear()
    await _same(cached, scanned, QUERIES)
    assert _cached_statements(sent) == 2 * len(QUERIES)  # every recall was given candidates

    # Written after the cache was read: found at once (not copied yet), then as copies written
    # since its snapshot.
    late = [f"a late note about lighthouses {i}" for i in range(5)]
    await cached.remember(late, namespace=NAMESPACE)
    await _same(cached, scanned, [*late, *QUERIES[:5]])
    await cached.index()
    assert await connection.fetchval(
        "SELECT count(*) FROM memory_vectors WHERE namespace = $1", NAMESPACE
    ) == ROWS + len(late)
    for text in late:
        best = await cached.recall(text, namespace=NAMESPACE, k=1, mode="vector")
        assert best.hits[0].content == text
    await _same(cached, scanned, QUERIES[:5])

    # The nearest of a query forgotten, updated (a new vector, copied again), expired and
    # invalidated: the cache still holds their old copies.
    nearest = (await cached.recall(QUERIES[1], namespace=NAMESPACE, k=12, mode="vector")).hits
    await cached.forget([hit.id for hit in nearest[:3]])
    await cached.update(nearest[3].id, content="rewritten: nothing like it was")
    await connection.execute(
        "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = ANY($1)",
        [hit.id for hit in nearest[4:6]],
    )
    await _invalidate(connection, [hit.id for hit in nearest[6:8]])
    sent.clear()
    await _same(cached, scanned, QUERIES)
    assert _cached_statements(sent) == 2 * len(QUERIES)
    await cached.index()
    await _same(cached, scanned, QUERIES)
    left = {hit.content for hit in await cached.recall(QUERIES[1], namespace=NAMESPACE, k=20)}
    assert not left & {hit.content for hit in nearest[:8]}


async def test_a_copy_replaced_since_the_cache_was_read_is_ranked_by_its_new_vector(
    stores: tuple[MemoryStore, MemoryStore, list[LoggedQuery]],
    migrated_dsn: str,
    connection: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A copy left wrong (its row's flag reset outside the triggers) is cached wrong, far from
    its text; the copier's conflict update replaces it, and the statement reads the replacement
    as a copy written since the cache's snapshot (no refresh in between)."""
    cached, scanned, _ = stores
    monkeypatch.setattr(process_cache, "REFRESH_SECONDS", 3600.0)
    await register_vector_codec(connection)
    text = "note 7 on topic 7 with word7"
    target = (await scanned.recall(text, namespace=NAMESPACE, k=1, mode="vector")).hits[0]
    assert target.content == text
    await connection.execute(
        "UPDATE memory_vectors SET embedding = $3 WHERE namespace = $1 AND id = $2",
        NAMESPACE,
        target.id,
        (-text_vector(text)).tolist(),
    )
    await connection.execute("UPDATE memories SET vector_copied = false WHERE id = $1", target.id)
    sent: list[LoggedQuery] = []
    fresh = await _store(migrated_dsn, sent)
    try:
        await _until_cached(fresh, sent)  # its cache holds the wrong copy
        await cached.index()  # the copier replaces it
        sent.clear()
        found = await fresh.recall(text, namespace=NAMESPACE, k=1, mode="vector")
        assert _cached_statements(sent) == 1
        assert found.hits[0].id == target.id
        await _same(fresh, scanned, [text, *QUERIES[:3]])
    finally:
        await fresh.close()


async def test_copies_written_since_are_read_into_the_cache(
    stores: tuple[MemoryStore, MemoryStore, list[LoggedQuery]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cached, scanned, _ = stores
    monkeypatch.setattr(process_cache, "REFRESH_SECONDS", 0.0)
    late = [f"a later note about harbours {i}" for i in range(30)]
    await cached.remember(late, namespace=NAMESPACE)
    await cached.index()
    held = cached._query._vectors._entries
    for _ in range(200):  # each recall starts a refresh once the last one is done
        await cached.recall(late[0], namespace=NAMESPACE, k=1, mode="vector")
        if sum(len(copies.ids) for copies in held.values()) == ROWS + len(late):
            break
        await asyncio.sleep(0.02)
    assert sum(len(copies.ids) for copies in held.values()) == ROWS + len(late)
    await _same(cached, scanned, [*late[:3], *QUERIES[:5]])


async def test_an_answer_the_cache_cannot_prove_runs_the_copied_plan(
    stores: tuple[MemoryStore, MemoryStore, list[LoggedQuery]], connection: asyncpg.Connection
) -> None:
    """The query's nearest invalidated, more than the spare candidates: fewer than k candidates
    remain in scope, the proof fails, and the copied plan answers."""
    cached, scanned, sent = stores
    nearest = await scanned.recall(QUERIES[2], namespace=NAMESPACE, k=60, mode="vector")
    await _invalidate(connection, [hit.id for hit in nearest.hits[: SPARE_CANDIDATES + 5]])
    sent.clear()
    answer = await cached.recall(QUERIES[2], namespace=NAMESPACE, k=10, mode="vector")
    statements = _vector_statements(sent)
    assert len(statements) == 2
    assert "v.id = ANY(" in statements[0]  # given candidates, unproven
    assert "ORDER BY v.id DESC" in statements[1]  # the copied plan's bound
    expected = await scanned.recall(QUERIES[2], namespace=NAMESPACE, k=10, mode="vector")
    assert [hit.id for hit in answer] == [hit.id for hit in expected]
    assert [hit.id for hit in answer] == [
        hit.id for hit in nearest.hits[SPARE_CANDIDATES + 5 :][:10]
    ]
    await _same(cached, scanned, [QUERIES[2]])


@HYBRID_PATHS
async def test_an_unproven_hybrid_answer_runs_the_copied_plan(
    migrated_dsn: str, connection: asyncpg.Connection, settings: dict[str, object]
) -> None:
    async with _stores(migrated_dsn, **settings) as (cached, scanned, sent):
        nearest = await scanned.recall(QUERIES[2], namespace=NAMESPACE, k=60, mode="vector")
        await _invalidate(connection, [hit.id for hit in nearest.hits[: SPARE_CANDIDATES + 5]])
        sent.clear()
        answer = await cached.recall(QUERIES[2], namespace=NAMESPACE, k=10, mode="hybrid")
        statements = _vector_statements(sent)
        assert any("v.id = ANY(" in statement for statement in statements)  # unproven
        assert any("ORDER BY v.id DESC" in statement for statement in statements)  # copied
        expected = await scanned.recall(QUERIES[2], namespace=NAMESPACE, k=10, mode="hybrid")
        assert [(hit.id, hit.score) for hit in answer] == [(hit.id, hit.score) for hit in expected]


async def test_memories_out_of_scope_when_read_take_no_candidates_place(
    stores: tuple[MemoryStore, MemoryStore, list[LoggedQuery]],
    migrated_dsn: str,
    connection: asyncpg.Connection,
) -> None:
    """Superseded facts crowd their successors: the query's 60 nearest invalidated before the
    cache is read are marked so, the candidates reach past them, and the answer is proven
    without the copied plan; one of them valid again is still found (they stay candidates)."""
    _, scanned, _ = stores
    nearest = await scanned.recall(QUERIES[3], namespace=NAMESPACE, k=70, mode="vector")
    invalid = [hit.id for hit in nearest.hits[:60]]
    await _invalidate(connection, invalid)
    sent: list[LoggedQuery] = []
    fresh = await _store(migrated_dsn, sent)  # its cache is read after the invalidation
    try:
        await _until_cached(fresh, sent)
        sent.clear()
        await _same(fresh, scanned, [QUERIES[3]])
        statements = _vector_statements(sent)
        assert statements
        assert all("v.id = ANY(" in statement for statement in statements)  # all proven
        await connection.execute("UPDATE memories SET valid_until = NULL WHERE id = $1", invalid[0])
        best = await fresh.recall(QUERIES[3], namespace=NAMESPACE, k=1, mode="vector")
        assert best.hits[0].id == invalid[0]
        await _same(fresh, scanned, [QUERIES[3]])
    finally:
        await fresh.close()


async def test_a_query_among_mostly_marked_copies_runs_the_copied_plan(
    stores: tuple[MemoryStore, MemoryStore, list[LoggedQuery]],
    migrated_dsn: str,
    connection: asyncpg.Connection,
) -> None:
    """Half the namespace invalidated, all of it nearer the query than the rest: the
    candidates would be most of the copies, probed one by one, so the copied plan scans them."""
    _, scanned, _ = stores
    nearest = await scanned.recall(QUERIES[4], namespace=NAMESPACE, k=ROWS, mode="vector")
    await _invalidate(connection, [hit.id for hit in nearest.hits[: ROWS // 2]])
    sent: list[LoggedQuery] = []
    fresh = await _store(migrated_dsn, sent)
    try:
        await _until_cached(fresh, sent)  # QUERIES[0]'s candidates: a few marked among them
        sent.clear()
        await _same(fresh, scanned, [QUERIES[4]])
        statements = _vector_statements(sent)
        assert statements
        assert not any("v.id = ANY(" in statement for statement in statements)
    finally:
        await fresh.close()


async def test_numpy_distances_lie_within_the_error_bound_of_pgvectors(
    connection: asyncpg.Connection,
) -> None:
    """Vectors of many norms and a few thousand queries' worth of sums: pgvector's distance
    (the statement's) and numpy's (the cache's) never differ by more than the bound the proof
    allows for."""
    await register_vector_codec(connection)
    generator = np.random.default_rng(25)
    vectors = generator.standard_normal((2000, DIMENSIONS)).astype(np.float32)
    vectors *= generator.uniform(0.01, 30, (2000, 1)).astype(np.float32)
    await connection.execute("CREATE TEMP TABLE probe (n int, v vector)")
    await connection.executemany(
        "INSERT INTO probe VALUES ($1, $2)", [(n, row.tolist()) for n, row in enumerate(vectors)]
    )
    worst = 0.0
    for scale in (1.0, 0.05, 12.0):
        query = (generator.standard_normal(DIMENSIONS) * scale).astype(np.float32)
        rows = await connection.fetch(
            "SELECT n, v <#> $1 AS d FROM probe ORDER BY n", query.tolist()
        )
        theirs = np.array([row["d"] for row in rows])
        ours = -np.vecdot(vectors, query).astype(np.float64)
        bound = vector_cache._error_bound(query, float(np.linalg.norm(vectors, axis=1).max()))
        worst = max(worst, float(np.abs(theirs - ours).max()) / bound)
    assert 0 < worst < 1


async def test_a_cache_of_no_bytes_is_off() -> None:
    cache = VectorCache(pool=None, max_bytes=0)  # type: ignore[arg-type]
    assert not cache.enabled
    assert await cache.candidates(NAMESPACE, 1, [0.0] * DIMENSIONS, 10) is None


# What a namespace of ``ROWS`` copies takes in the cache: vectors, ids, marks.
CACHED_BYTES = ROWS * (DIMENSIONS * 4 + 16 + 1)


async def _settled(cache: VectorCache) -> None:
    """Until the cache's loads in flight are done (at most 2 s)."""
    for _ in range(200):
        if not cache._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a load of the cache never ended")


async def test_a_namespace_larger_than_the_cache_is_not_read(
    stores: tuple[MemoryStore, MemoryStore, list[LoggedQuery]],
) -> None:
    """Its size is read first: too large, its copies are not read, and not asked again
    before ``RELOAD_SECONDS``; the recall runs the copied plan meanwhile."""
    cached, _, _ = stores
    space_id = await cached._spaces.require(cached.embedder.space)
    query = text_vector(QUERIES[0]).tolist()
    small = VectorCache(cached._pool, max_bytes=CACHED_BYTES - 1)
    roomy = VectorCache(cached._pool, max_bytes=CACHED_BYTES)
    try:
        for cache in (small, roomy):
            assert await cache.candidates(NAMESPACE, space_id, query, 10) is None
            await _settled(cache)
        assert await small.candidates(NAMESPACE, space_id, query, 10) is None
        assert not small._tasks  # not read again
        found = await roomy.candidates(NAMESPACE, space_id, query, 10)
        assert found is not None
        assert len(found.ids) == 10
    finally:
        await small.aclose()
        await roomy.aclose()


async def test_loads_that_fail_find_nothing_or_take_turns_are_not_repeated_on_every_recall(
    migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A namespace recalled before its copies exist is read again once they do (after
    ``RELOAD_SECONDS``); a load that fails, or two namespaces taking turns in a budget for
    one, start at most one load a namespace per ``RELOAD_SECONDS``."""
    monkeypatch.setattr(process_cache, "RELOAD_SECONDS", 1.5)
    store = await _store(migrated_dsn, vector_cache_mb=0)
    try:
        for namespace in ("a", "b"):
            await store.remember([f"{namespace} note {i}" for i in range(150)], namespace=namespace)
        space_id = await store._spaces.require(store.embedder.space)
        query = text_vector("a note 1").tolist()
        loads: list[str] = []
        cache = VectorCache(store._pool, max_bytes=150 * (DIMENSIONS * 4 + 17))  # one of two
        counted = cache._load

        async def load(key: tuple[str, int]) -> None:
            loads.append(key[0])
            await counted(key)

        monkeypatch.setattr(cache, "_load", load)
        try:
            for _ in range(5):  # no copies yet: nothing kept, one load
                assert await cache.candidates("a", space_id, query, 10) is None
                await _settled(cache)
            assert loads == ["a"]
            await store.index()
            await asyncio.sleep(1.5)
            assert await cache.candidates("a", space_id, query, 10) is None
            await _settled(cache)
            assert await cache.candidates("a", space_id, query, 10) is not None
            loads.clear()
            monkeypatch.setattr(process_cache, "RELOAD_SECONDS", 3600.0)
            for turn in range(40):  # taking turns: "b" evicts "a", then neither is read again
                await cache.candidates("ab"[turn % 2], space_id, query, 10)
                await _settled(cache)
            assert loads == ["b"]
            monkeypatch.setattr(vector_cache, "_LOAD", "SELECT no_such_column FROM memory_vectors")
            monkeypatch.setattr(process_cache, "RELOAD_SECONDS", 0.0)
            cache._not_before.clear()
            cache._dropped(("b", space_id))
            monkeypatch.setattr(process_cache, "RELOAD_SECONDS", 3600.0)
            loads.clear()
            for _ in range(20):  # failing
                assert await cache.candidates("b", space_id, query, 10) is None
                await _settled(cache)
            assert loads == ["b"]
        finally:
            await cache.aclose()
    finally:
        await store.close()
