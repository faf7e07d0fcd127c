"""Keyword postings (issue 25): BM25 of a large namespace from ``memory_terms``, written in the
background, ranks as the scan of every matching tsvector does; rows not moved yet are found at
once; expiry, valid time, filters, updates and forget hold; writes leave the table alone."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from pgrecall import MemoryInput, MemoryStore

from .conftest import store_settings
from .fakes import HashEmbedder

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "eval" / "scifact"
ABSTRACTS = 300
CLAIMS = 40
NAMESPACE = "kb"


def _scifact(name: str, count: int) -> list[dict[str, str]]:
    path = SCIFACT / name
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/eval)")
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for _, line in zip(range(count), lines, strict=False)]


async def _open(dsn: str, min_rows: int) -> MemoryStore:
    settings = store_settings(worker=False, keyword_postings_min_rows=min_rows)
    return await MemoryStore.open(settings, dsn=dsn, embedder=HashEmbedder())


async def _keyword(store: MemoryStore, query: str, **options: object) -> list[tuple[str, float]]:
    result = await store.recall(query, namespace=NAMESPACE, k=10, mode="keyword", **options)  # type: ignore[arg-type]
    return [(hit.content, round(hit.score, 9)) for hit in result]


async def _moved(connection: asyncpg.Connection) -> int:
    """Rows moved into the postings; checks that the stored count of each namespace (BM25's N,
    migration 0015) says the same."""
    moved = await connection.fetch(
        "SELECT namespace, count(*) AS n FROM memories WHERE terms_indexed GROUP BY namespace"
    )
    counted = await connection.fetch(
        "SELECT namespace, documents AS n FROM memory_term_counts WHERE documents <> 0"
    )
    assert sorted(map(tuple, counted)) == sorted(map(tuple, moved))
    return sum(int(row["n"]) for row in moved)


async def test_postings_rank_as_the_scan_of_every_tsvector_on_scifact(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    abstracts = _scifact("memories.jsonl", ABSTRACTS + 1)
    claims = [claim["question"] for claim in _scifact("queries.jsonl", CLAIMS)]
    postings = await _open(migrated_dsn, min_rows=100)
    scanned = await _open(migrated_dsn, min_rows=1_000_000)  # the same store, the old plan
    try:
        await postings.remember([a["text"] for a in abstracts[:ABSTRACTS]], namespace=NAMESPACE)
        assert await connection.fetchval("SELECT count(*) FROM memory_terms") == 0
        await postings.index()
        assert await _moved(connection) == ABSTRACTS
        # One abstract written after the move: read from its tsvector, beside the postings.
        await postings.remember(abstracts[ABSTRACTS]["text"], namespace=NAMESPACE)
        assert await _moved(connection) == ABSTRACTS
        claims.append(abstracts[ABSTRACTS]["text"][:200])  # finds the unmoved abstract first
        for claim in claims:
            assert await _keyword(postings, claim) == await _keyword(scanned, claim), claim
        best = await postings.recall(claims[-1], namespace=NAMESPACE, k=1, mode="keyword")
        assert best.hits[0].content == abstracts[ABSTRACTS]["text"]
        # Hybrid ranks by the same keyword list: the fused hits agree too.
        for claim in claims[:5]:
            both = [
                [hit.content for hit in await store.recall(claim, namespace=NAMESPACE, k=10)]
                for store in (postings, scanned)
            ]
            assert both[0] == both[1]
    finally:
        await postings.close()
        await scanned.close()


async def test_expired_invalid_filtered_changed_and_forgotten_memories_hold(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    store = await _open(migrated_dsn, min_rows=10)
    try:
        filler = [MemoryInput(f"filler note number {i} about gardens") for i in range(20)]
        ids = await store.remember(
            [
                MemoryInput("the lighthouse keeper feeds the gulls", key="gone"),
                MemoryInput("the lighthouse stands on the northern cape", key="old"),
                MemoryInput("the lighthouse lamp is red", key="red", metadata={"lamp": "red"}),
                MemoryInput("the lighthouse was painted last spring", key="changed"),
                MemoryInput("the lighthouse keeper retired", key="forgotten"),
                *filler,
            ],
            namespace=NAMESPACE,
        )
        await store.remember("the lighthouse is in another namespace", namespace="elsewhere")
        await store.index()
        assert await _moved(connection) == 25  # "elsewhere" is small: never moved
        gone, old, _red, changed, forgotten = [memory.id for memory in ids[:5]]
        await connection.execute(
            "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = $1", gone
        )
        await store.invalidate(old, reason="moved inland")
        await store.update(changed, content="the beacon was painted last spring")
        await store.forget([forgotten])
        # The text change dropped the row's postings and its flag; the delete its postings.
        assert (
            await connection.fetchval("SELECT terms_indexed FROM memories WHERE id = $1", changed)
            is False
        )
        orphans = await connection.fetchval(
            "SELECT count(*) FROM memory_terms t WHERE NOT EXISTS (SELECT 1 FROM memories m "
            "WHERE m.namespace = t.namespace AND m.id = t.memory_id AND m.terms_indexed)"
        )
        assert orphans == 0

        found = [content for content, _ in await _keyword(store, "lighthouse")]
        assert found == ["the lighthouse lamp is red"]
        everything = await _keyword(store, "lighthouse", include_invalid=True)
        assert sorted(content for content, _ in everything) == [
            "the lighthouse lamp is red",
            "the lighthouse stands on the northern cape",
        ]
        assert [c for c, _ in await _keyword(store, "lighthouse", filter={"lamp": "red"})] == [
            "the lighthouse lamp is red"
        ]
        assert await _keyword(store, "lighthouse", filter={"lamp": "green"}) == []
        # The changed memory is found by its new text before it is moved again, and after.
        for _ in range(2):
            assert [c for c, _ in await _keyword(store, "beacon painted")] == [
                "the beacon was painted last spring"
            ]
            assert [c for c, _ in await _keyword(store, "painted spring")] == [
                "the beacon was painted last spring"
            ]
            await store.index()
        # Moved again; the forgotten one is gone, the expired one waits for the sweeper.
        assert await _moved(connection) == 24
    finally:
        await store.close()


async def test_valid_at_reads_past_facts_from_the_postings(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    store = await _open(migrated_dsn, min_rows=5)
    try:
        start = datetime.now(UTC) - timedelta(days=10)
        await store.remember(
            [
                MemoryInput(
                    "the ferry leaves at noon",
                    valid_from=start,
                    valid_until=start + timedelta(days=5),
                ),
                *[MemoryInput(f"timetable entry {i}") for i in range(6)],
            ],
            namespace=NAMESPACE,
        )
        await store.index()
        assert await _moved(connection) == 7
        assert await _keyword(store, "ferry noon") == []
        past = await _keyword(store, "ferry noon", valid_at=start + timedelta(days=1))
        assert [content for content, _ in past] == ["the ferry leaves at noon"]
    finally:
        await store.close()


async def _textbook_bm25(
    connection: asyncpg.Connection, query: str, k1: float, b: float
) -> dict[str, float]:
    """BM25 of the namespace's memories for ``query``, computed here from their tsvectors: N the
    namespace's memories, df and the average length over those sharing a lexeme with the query,
    tf a lexeme's positions, a memory's length its lexemes (``recall.sql.keyword_ranking``)."""
    lexemes = set(
        await connection.fetchval(
            "SELECT tsvector_to_array(to_tsvector(pgrecall_text_config(), $1))", query
        )
    )
    rows = await connection.fetch(
        "SELECT m.id::text AS id, length(m.search) AS dl, t.lexeme,"
        " cardinality(t.positions) AS tf FROM memories m, unnest(m.search) AS t"
        " WHERE m.namespace = $1",
        NAMESPACE,
    )
    total = await connection.fetchval(
        "SELECT count(*) FROM memories WHERE namespace = $1", NAMESPACE
    )
    lengths = {row["id"]: row["dl"] for row in rows}
    postings = [row for row in rows if row["lexeme"] in lexemes]
    matching = {row["id"] for row in postings}
    average = max(sum(lengths[memory] for memory in matching) / len(matching), 1)
    frequency = {lexeme: sum(row["lexeme"] == lexeme for row in postings) for lexeme in lexemes}
    scores = dict.fromkeys(matching, 0.0)
    for row in postings:
        df, tf = frequency[row["lexeme"]], row["tf"]
        idf = math.log(1 + (total - df + 0.5) / (df + 0.5))
        length = 1 - b + b * lengths[row["id"]] / average
        scores[row["id"]] += idf * tf * (k1 + 1) / (tf + k1 * length)
    return scores


async def test_keyword_scores_are_textbook_bm25_from_postings_and_scan(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    """The scores both plans compute (their arithmetic is arranged to be cheap per posting)
    are BM25 as its formula is written, term by term, to 1e-9."""
    postings = await _open(migrated_dsn, min_rows=5)
    scanned = await _open(migrated_dsn, min_rows=1_000_000)
    try:
        await postings.remember(
            [
                "tomato seeds need warm soil and water every morning",
                "water the tomato plants, water them again: tomato leaves wilt",
                "a garden of roses and a garden of herbs",
                "seeds of basil, seeds of parsley, seeds of dill",
                "the kettle is on the stove",
                "warm water for the tea",
                "soil testing kit for the garden beds",
            ],
            namespace=NAMESPACE,
        )
        await postings.index()
        assert await _moved(connection) == 7
        settings = postings.settings
        for query in ("tomato water", "garden seeds soil", "warm tea kettle", "basil"):
            expected = await _textbook_bm25(connection, query, settings.bm25_k1, settings.bm25_b)
            for store in (postings, scanned):
                result = await store.recall(query, namespace=NAMESPACE, k=10, mode="keyword")
                found = {str(hit.id): hit.score for hit in result}
                assert found.keys() == expected.keys(), query
                for memory, score in found.items():
                    assert score == pytest.approx(expected[memory], rel=1e-9, abs=1e-12), query
    finally:
        await postings.close()
        await scanned.close()
