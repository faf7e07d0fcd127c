"""The process's cache of a large namespace's keyword postings (issue 25,
recall/keyword_cache.py): BM25 from the cached postings and what the statement returns since
gives the same memories and the same scores, to the bit, as BM25 from the postings read whole,
through writes, moves, forgets, updates, expiry and invalidation; a posting dropped since the
cache was read sends the recall to the postings read whole and loads the namespace again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from pgrecall import MemoryStore
from pgrecall.db.pool import create_pool
from pgrecall.recall import process_cache
from pgrecall.recall.keyword_cache import KeywordCache

from .conftest import store_settings
from .fakes import HashEmbedder
from .test_vector_cache import _invalidate, _store

NAMESPACE = "kb"
ROWS = 400
QUERIES = [f"topic {i} and word{i % 7} harbour" for i in range(20)]


def _text(i: int) -> str:
    """Texts of varied lengths and term frequencies, sharing words across the namespace."""
    return f"note {i} on topic {i % 17} with word{i % 29} " + "harbour light " * (i % 5)


def _since_statements(sent: list[LoggedQuery]) -> int:
    """The logged statements that read only what a cache of postings lacks."""
    return sum("h.lexemes" in logged.query for logged in sent)


def _whole_statements(sent: list[LoggedQuery]) -> int:
    """The logged statements that read the query's postings whole."""
    return sum(
        "WITH terms AS" in logged.query and "h.lexemes" not in logged.query for logged in sent
    )


async def _answers(
    store: MemoryStore, query: str, modes: tuple[str, ...]
) -> list[list[tuple[str, float]]]:
    answers = []
    for mode in modes:
        result = await store.recall(query, namespace=NAMESPACE, k=10, mode=mode)  # type: ignore[arg-type]
        answers.append([(hit.content, hit.score) for hit in result])
    return answers


async def _same(
    cached: MemoryStore, read: MemoryStore, queries: list[str], modes: tuple[str, ...]
) -> None:
    """The same memories and scores, exactly: both sum each score in the lexemes' order."""
    for query in queries:
        assert await _answers(cached, query, modes) == await _answers(read, query, modes), query


async def _until_cached(store: MemoryStore, sent: list[LoggedQuery]) -> None:
    """Recall until its statement reads only what the cache lacks; at most 200 tries."""
    for _ in range(200):
        sent.clear()
        await store.recall(QUERIES[0], namespace=NAMESPACE, k=5, mode="keyword")
        if _since_statements(sent):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the namespace's postings were never cached")


@contextlib.asynccontextmanager
async def _stores(
    dsn: str, **settings: object
) -> AsyncIterator[tuple[MemoryStore, MemoryStore, list[LoggedQuery]]]:
    """A store that caches the postings (its statements logged) and one that reads them whole,
    both with ``settings``, on the same database, the namespace's postings moved."""
    sent: list[LoggedQuery] = []
    cached = await _store(dsn, sent, **settings)
    read = await _store(dsn, keyword_cache_mb=0, **settings)
    try:
        await cached.remember([_text(i) for i in range(ROWS)], namespace=NAMESPACE)
        await cached.index()
        await _until_cached(cached, sent)
        yield cached, read, sent
    finally:
        await cached.close()
        await read.close()


@pytest.mark.parametrize(
    "settings", [{}, {"hybrid_split": False}], ids=["split-allowed", "one-statement"]
)
async def test_cached_postings_score_as_the_postings_read_whole_through_writes(
    migrated_dsn: str,
    connection: asyncpg.Connection,
    settings: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(process_cache, "RELOAD_SECONDS", 0.0)
    modes = ("keyword", "hybrid")
    async with _stores(migrated_dsn, **settings) as (cached, read, sent):
        sent.clear()
        await _same(cached, read, QUERIES, modes)
        assert _since_statements(sent) == 2 * len(QUERIES)  # every recall used the cache
        assert _whole_statements(sent) == 0

        # Written after the cache was read: found at once (not moved yet), then as postings
        # moved since its snapshot, the cache still used.
        late = [f"a late note about the harbour lighthouse {i}" for i in range(5)]
        await cached.remember(late, namespace=NAMESPACE)
        await _same(cached, read, [*late, *QUERIES[:5]], modes)
        await cached.index()
        sent.clear()
        await _same(cached, read, [*late, *QUERIES[:5]], modes)
        assert _whole_statements(sent) == 0
        best = await cached.recall(late[2], namespace=NAMESPACE, k=1, mode="keyword")
        assert best.hits[0].content == late[2]

        # Expired and invalidated memories keep their postings: the winners' scope drops them.
        best = (await cached.recall(QUERIES[1], namespace=NAMESPACE, k=12, mode="keyword")).hits
        await connection.execute(
            "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = ANY($1)",
            [hit.id for hit in best[:2]],
        )
        await _invalidate(connection, [hit.id for hit in best[2:4]])
        sent.clear()
        await _same(cached, read, QUERIES, modes)
        assert _whole_statements(sent) == 0

        # Forgotten and rewritten: postings dropped, which the cache cannot see; its count
        # tells, and the recall reads the postings whole.
        await cached.forget([hit.id for hit in best[4:6]])
        await cached.update(best[6].id, content="rewritten: nothing like it was")
        sent.clear()
        await _same(cached, read, QUERIES, modes)
        assert _whole_statements(sent) >= 1
        await cached.index()
        await _until_cached(cached, sent)  # loaded again, with the new count
        sent.clear()
        await _same(cached, read, QUERIES, modes)
        assert _whole_statements(sent) == 0
        left = {hit.content for hit in await cached.recall(QUERIES[1], namespace=NAMESPACE)}
        assert not left & {hit.content for hit in best[:7]}


async def test_a_dropped_posting_stops_the_cache_until_it_is_loaded_again(
    migrated_dsn: str, connection: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recall that finds the count changed reads its postings whole, and the cache drops
    the namespace: the recalls after it read their postings whole (one statement, not two)
    until the load is done, which holds the new count."""
    monkeypatch.setattr(process_cache, "RELOAD_SECONDS", 3600.0)
    async with _stores(migrated_dsn) as (cached, read, sent):
        keywords = cached._query._keywords
        before = keywords._entries[NAMESPACE]
        gone = (await cached.recall(QUERIES[3], namespace=NAMESPACE, k=1, mode="keyword")).hits
        await cached.forget([gone[0].id])
        sent.clear()
        await _same(cached, read, QUERIES[:3], ("keyword",))
        assert _since_statements(sent) == 1
        assert _whole_statements(sent) == 3
        assert NAMESPACE not in keywords._entries  # not loaded again within RELOAD_SECONDS
        monkeypatch.setattr(process_cache, "RELOAD_SECONDS", 0.0)
        keywords._not_before.clear()
        await _until_cached(cached, sent)
        assert keywords._entries[NAMESPACE].dropped == before.dropped + 1
        await _same(cached, read, QUERIES, ("keyword",))


async def test_postings_moved_since_are_read_into_the_cache(
    migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_cache, "REFRESH_SECONDS", 0.0)
    async with _stores(migrated_dsn) as (cached, read, sent):
        late = [f"a later note about harbours and lights {i}" for i in range(30)]
        await cached.remember(late, namespace=NAMESPACE)
        await cached.index()
        held = cached._query._keywords._entries
        for _ in range(200):  # each recall starts a refresh once the last one is done
            await cached.recall(late[0], namespace=NAMESPACE, k=1, mode="keyword")
            if len(held[NAMESPACE].ids) == ROWS + len(late):
                break
            await asyncio.sleep(0.02)
        assert len(held[NAMESPACE].ids) == ROWS + len(late)
        assert len(held[NAMESPACE].segments) >= 2
        sent.clear()
        await _same(cached, read, [*late[:5], *QUERIES[:5]], ("keyword", "hybrid"))
        assert _whole_statements(sent) == 0


async def test_the_dropped_count_grows_with_every_posting_lost_and_only_then(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    """``memory_term_counts.dropped`` (migration 0019): a moved memory deleted or rewritten adds
    one; remembering, moving, expiring and rewriting a memory not moved yet add none."""
    store = await _store(migrated_dsn, keyword_cache_mb=0)
    try:
        stored = await store.remember([_text(i) for i in range(ROWS)], namespace=NAMESPACE)
        ids = [memory.id for memory in stored]

        async def dropped() -> int:
            count: int = await connection.fetchval(
                "SELECT dropped FROM memory_term_counts WHERE namespace = $1", NAMESPACE
            )
            return count

        await store.index()
        assert await dropped() == 0
        late = await store.remember(["not moved yet"], namespace=NAMESPACE)
        await store.update(late[0].id, content="still not moved")
        await connection.execute("UPDATE memories SET expires_at = now() WHERE id = $1", ids[0])
        assert await dropped() == 0
        await store.forget(ids[1:3])
        assert await dropped() == 2
        await store.update(ids[3], content="rewritten")
        assert await dropped() == 3
        moved_by = await connection.fetchval(
            "SELECT count(*) FROM memory_terms WHERE namespace = $1 AND moved_by IS NULL",
            NAMESPACE,
        )
        assert moved_by == 0  # every posting dated by its mover's transaction
    finally:
        await store.close()


async def test_a_namespace_larger_than_the_cache_is_not_read(
    migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its size is asked first: the postings are never read, and not asked again before
    ``RELOAD_SECONDS``; the recall reads its postings whole meanwhile."""
    store = await MemoryStore.open(
        store_settings(worker=False, keyword_postings_min_rows=100),
        dsn=migrated_dsn,
        embedder=HashEmbedder(),
    )
    pool = await create_pool(migrated_dsn, min_size=1, max_size=2)
    small = KeywordCache(pool, max_bytes=4_000)  # the postings of 400 notes take ~30 kB
    try:
        await store.remember([_text(i) for i in range(ROWS)], namespace=NAMESPACE)
        await store.index()
        assert small.postings(NAMESPACE) is None
        for _ in range(100):
            if not small._tasks:
                break
            await asyncio.sleep(0.02)
        assert not small._tasks
        assert small.postings(NAMESPACE) is None
        assert not small._tasks  # not read again
        assert small._not_before[NAMESPACE] > time.monotonic() + process_cache.RELOAD_SECONDS
    finally:
        await small.aclose()
        await pool.close()
        await store.close()


async def test_postings_dated_by_another_clusters_transactions_are_not_cached(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    """A posting whose ``moved_by`` lies beyond every transaction this cluster has begun (a
    restored dump's) would read as moved since any snapshot and count twice: the namespace is
    not cached, and its recalls read their postings whole."""
    sent: list[LoggedQuery] = []
    cached = await _store(migrated_dsn, sent)
    read = await _store(migrated_dsn, keyword_cache_mb=0)
    try:
        await cached.remember([_text(i) for i in range(ROWS)], namespace=NAMESPACE)
        await cached.index()
        await connection.execute(
            "UPDATE memory_terms SET moved_by = '4000000000000'::xid8 WHERE namespace = $1"
            " AND memory_id = (SELECT memory_id FROM memory_terms WHERE namespace = $1 LIMIT 1)",
            NAMESPACE,
        )
        for _ in range(20):
            sent.clear()
            await _same(cached, read, QUERIES[:2], ("keyword",))
            assert _since_statements(sent) == 0
            await asyncio.sleep(0.02)
        assert NAMESPACE not in cached._query._keywords._entries
    finally:
        await cached.close()
        await read.close()
