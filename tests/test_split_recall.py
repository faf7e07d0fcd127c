"""Hybrid recall split in three statements (recall/split.py): the same hits as the one statement
across the recall's options, with either fusion; the gate that keeps the one statement when
another recall is in flight or the pool has no two connections free; the winners' recheck."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.db.params import SqlParams
from pgrecall.db.pool import create_pool
from pgrecall.embedding.base import BatchOutput
from pgrecall.errors import EmbedderUnavailableError
from pgrecall.recall.split import SplitGate, fused_statement
from pgrecall.recall.sql import Fusion, recall_scope
from pgrecall.records import RecallOptions

from .conftest import store_settings
from .fakes import HashEmbedder, text_vector

TOPICS = ("tides", "orchards", "glaciers", "printers", "ledgers")
NOW = datetime.now(UTC)
# The fused statement's mark: the rankings given as arrays.
SPLIT_MARK = "WITH ORDINALITY"


class SwitchableEmbedder(HashEmbedder):
    """A HashEmbedder that answers "down" (transient) while ``down`` is set."""

    down = False

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        if self.down:
            raise EmbedderUnavailableError("the embedder is down")
        return await super()._embed_batch(texts)


def _corpus() -> list[MemoryInput]:
    """Two namespaces of notes sharing words, some backdated, some keyed (versions), some in
    threads, some no longer valid, some with importance."""
    memories = []
    for n in range(90):
        topic = TOPICS[n % len(TOPICS)]
        memories.append(
            MemoryInput(
                f"cluster:{n % 4} note {n} on {topic}, word{n % 7} and {TOPICS[n % 3]}",
                namespace="kb" if n % 3 else "kb2",
                metadata={"topic": topic, "importance": (n % 5) / 4, "session": f"s{n % 6}"},
                key=f"fact-{n}" if n % 10 == 0 else None,
                created_at=NOW - timedelta(days=n % 9),
                valid_until=NOW - timedelta(days=1) if n % 17 == 0 else None,
            )
        )
    return memories


async def _split_store(
    dsn: str, embedder: HashEmbedder, sent: list[str], **settings: Any
) -> MemoryStore:
    """A store on a pool of two connections whose statements are logged in ``sent``."""
    pool = await create_pool(dsn, min_size=2, max_size=2)
    async with pool.acquire() as first, pool.acquire() as second:
        for connection in (first, second):
            connection.add_query_logger(lambda record: sent.append(record.query))
    resources = AsyncExitStack()
    resources.push_async_callback(pool.close)
    return MemoryStore(store_settings(**settings), pool, dsn, embedder, resources)


# The plans a split recall's rankings can take, as settings of both stores: the exact scans of
# the rows and every matching tsvector (the corpus's namespaces are small); the vector copies
# and the keyword postings; the graph (kb above the exact-scan size).
PLANS: dict[str, dict[str, int]] = {
    "scans": {},
    "copies and postings": {"vector_copy_min_rows": 20, "keyword_postings_min_rows": 20},
    "graph": {"exact_scan_max_rows": 50},
}


@pytest.fixture
async def stores(
    request: pytest.FixtureRequest, migrated_dsn: str
) -> AsyncIterator[tuple[MemoryStore, MemoryStore, list[str], SwitchableEmbedder, datetime]]:
    """(split store, one-statement store, the split store's statements, its embedder, a time
    before the keyed memories changed) on one database; the fusion and plan of
    ``request.param`` (default: scores, scans)."""
    fusion, plan = getattr(request, "param", ("scores", "scans"))
    settings = {"worker": False, "hybrid_fusion": fusion, **PLANS[plan]}
    embedder = SwitchableEmbedder()
    sent: list[str] = []
    split = await _split_store(migrated_dsn, embedder, sent, **settings)
    single = await MemoryStore.open(
        store_settings(hybrid_split=False, **settings), dsn=migrated_dsn, embedder=embedder
    )
    try:
        await split.remember(_corpus())
        before = datetime.now(UTC)
        for n in range(0, 90, 10):  # new versions of the keyed facts
            namespace = "kb" if n % 3 else "kb2"
            await split.remember(
                f"revised note {n} on tides and orchards", namespace=namespace, key=f"fact-{n}"
            )
        await split.index(rebuild=plan == "graph")
        await split.remember("a late note on tides, after the move", namespace="kb")
        connection = await asyncpg.connect(migrated_dsn)
        try:  # expired, not yet swept: out of every recall
            await connection.execute(
                "UPDATE memories SET expires_at = now() - interval '1 minute' "
                "WHERE content LIKE '%word3 %' AND namespace = 'kb'"
            )
        finally:
            await connection.close()
        yield split, single, sent, embedder, before
    finally:
        await split.close()
        await single.close()


def _hits(result: Any, rel: float = 1e-9) -> list[tuple[Any, ...]]:
    """Each hit's memory and scores, to ``rel``."""
    return [
        (
            hit.id,
            hit.namespace,
            pytest.approx(hit.score, rel=rel),
            hit.vector_score and pytest.approx(hit.vector_score, rel=rel),
            hit.keyword_score and pytest.approx(hit.keyword_score, rel=rel),
        )
        for hit in result.hits
    ]


QUERIES = ("tides and orchards", "word3 glaciers revised", "nothing shares these words")


@pytest.mark.parametrize(
    "stores",
    [("scores", "scans"), ("rrf", "scans"), ("scores", "copies and postings"), ("rrf", "graph")],
    indirect=True,
    ids=["scores-scans", "rrf-scans", "scores-copies-postings", "rrf-graph"],
)
async def test_split_hybrid_recall_finds_what_the_one_statement_finds(
    stores: tuple[MemoryStore, MemoryStore, list[str], SwitchableEmbedder, datetime],
) -> None:
    split, single, sent, _, before = stores
    cases: list[dict[str, Any]] = [
        {},
        {"k": 3},
        {"k": 40},
        {"filter": {"topic": "tides"}},
        {"filter": {"importance": {"gte": 0.5}}},
        {"created_after": NOW - timedelta(days=4)},
        {"created_before": NOW - timedelta(days=2)},
        {"as_of": before},
        {"exact": True},
        {"valid_at": NOW - timedelta(days=3)},
        {"include_invalid": True},
        {"min_score": 0.0},
        {"diversity": 0.6},
        {"importance": "importance"},
        {"recency_half_life": 86400.0},
        {"vector_weight": 0.5, "keyword_weight": 2.0},
        {"vector_weight": 0.0},
        {"neighbours": 1, "k": 6},
    ]
    for namespaces in (["kb"], ["kb", "kb2"]):
        for options in cases:
            for query in QUERIES:
                sent.clear()
                ours = await split.recall(query, namespace=namespaces, **options)
                assert any(SPLIT_MARK in sql for sql in sent), (namespaces, options)
                theirs = await single.recall(query, namespace=namespaces, **options)
                where = (query, namespaces, options)
                if "recency_half_life" in options:
                    # The boost moves with the clock (1e-4 in 12 s), and ties of boosted
                    # scores break either way from one recall to the next: the same hits.
                    assert sorted(_hits(ours, 1e-4)) == sorted(_hits(theirs, 1e-4)), where
                else:
                    assert _hits(ours) == _hits(theirs), where
                assert (ours.mode, ours.exact, ours.pending) == (
                    theirs.mode,
                    theirs.exact,
                    theirs.pending,
                ), where
    expired = await split.recall("word3", namespace="kb", k=40, mode="hybrid")
    assert expired.hits
    assert all("word3 " not in hit.content for hit in expired.hits)


async def test_a_degraded_or_single_ranking_recall_stays_one_statement(
    stores: tuple[MemoryStore, MemoryStore, list[str], SwitchableEmbedder, datetime],
) -> None:
    split, single, sent, embedder, _ = stores
    for mode in ("vector", "keyword"):
        sent.clear()
        ours = await split.recall("tides and orchards", namespace="kb", mode=mode)  # type: ignore[arg-type]
        assert ours.hits
        assert not any(SPLIT_MARK in sql for sql in sent)
    embedder.down = True
    sent.clear()
    ours = await split.recall("tides and orchards", namespace="kb")
    assert not any(SPLIT_MARK in sql for sql in sent)
    theirs = await single.recall("tides and orchards", namespace="kb")
    assert ours.degraded
    assert theirs.degraded
    assert ours.mode == "keyword"
    assert _hits(ours) == _hits(theirs)
    assert ours.hits


async def test_the_gate_opens_for_a_lone_recall_with_two_connections_free(
    migrated_dsn: str,
) -> None:
    pool = await create_pool(migrated_dsn, min_size=1, max_size=3)
    try:
        gate = SplitGate(pool, enabled=True)
        with gate.recall():
            assert gate.open()  # connections not opened yet count as free
            with gate.recall():
                assert not gate.open()  # another recall in flight
            async with pool.acquire():
                assert gate.open()  # 2 of 3 free
                async with pool.acquire():
                    assert not gate.open()  # 1 free
            assert gate.open()
        with SplitGate(pool, enabled=False).recall():
            assert not SplitGate(pool, enabled=False).open()
    finally:
        await pool.close()


async def test_a_busy_pool_keeps_hybrid_recall_one_statement(
    stores: tuple[MemoryStore, MemoryStore, list[str], SwitchableEmbedder, datetime],
) -> None:
    split, single, sent, _, _ = stores
    async with split._pool.acquire():  # one of the two connections taken
        sent.clear()
        ours = await split.recall("tides and orchards", namespace="kb")
    assert not any(SPLIT_MARK in sql for sql in sent)
    theirs = await single.recall("tides and orchards", namespace="kb")
    assert _hits(ours) == _hits(theirs)
    assert ours.hits


async def test_a_winner_that_left_the_scope_since_its_ranking_gives_way(migrated_dsn: str) -> None:
    """The fused statement checks the scope on the winners: a candidate the rankings returned
    but that expired before the fusion ran is skipped, and the next one takes its place."""
    store = await MemoryStore.open(
        store_settings(worker=False), dsn=migrated_dsn, embedder=HashEmbedder()
    )
    try:
        texts = [f"harbour note {n}" for n in range(5)]
        ids = [memory.id for memory in await store.remember(texts, namespace="kb")]
    finally:
        await store.close()
    connection = await asyncpg.connect(migrated_dsn)
    try:
        from pgrecall.db.vectors import register_vector_codec

        await register_vector_codec(connection)
        await connection.execute(
            "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = $1", ids[0]
        )
        ranked = [{"namespace": "kb", "id": i, "score": 1.0 - n / 10} for n, i in enumerate(ids)]
        params = SqlParams()
        scope = recall_scope(params, ["kb"], RecallOptions(), generic=True)
        fusion = Fusion(
            method="rrf",
            vector_weight=params.add(1.0, "float8"),
            keyword_weight=params.add(1.0, "float8"),
            rrf_k=params.add(5.0, "float8"),
            depth="100",
        )
        query = params.add(text_vector("harbour").tolist(), "vector")
        sql = fused_statement(params, scope, (ranked, ranked), fusion, query, "3", "NULL::vector")
        rows = await connection.fetch(sql, *params.values)
    finally:
        await connection.close()
    assert [row["id"] for row in rows] == ids[1:4]
