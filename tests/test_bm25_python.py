"""BM25 scored in Python from the postings (recall/bm25.py): the hits of the SQL plan, ids and
scores, in keyword and hybrid mode, split or not, across the recall's scopes; the fall back to
every scored memory when too few of the best pass the scope; a winner that expires between the
postings statement and the winners'."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from pgrecall import MemoryStore
from pgrecall.recall import bm25

from .conftest import store_settings
from .fakes import HashEmbedder
from .test_split_recall import NOW, QUERIES, _corpus, _hits, _split_store

# Both stores read the postings and the copies of the corpus's namespaces; "graph" also walks
# the HNSW graph of kb (above the exact-scan size), with the LIMITs bound.
PLANS: dict[str, dict[str, int]] = {
    "postings": {"vector_copy_min_rows": 20, "keyword_postings_min_rows": 20},
    "graph": {"keyword_postings_min_rows": 20, "exact_scan_max_rows": 50},
}
Stores = tuple[MemoryStore, MemoryStore, list[str]]


@pytest.fixture
async def stores(request: pytest.FixtureRequest, migrated_dsn: str) -> AsyncIterator[Stores]:
    """(Python-scored store, SQL-scored store, the Python store's statements) on one database,
    the plan of ``request.param`` (default: postings); the Python store splits hybrid recall
    (two connections), the SQL one does not."""
    plan = getattr(request, "param", "postings")
    settings = {"worker": False, **PLANS[plan]}
    sent: list[str] = []
    embedder = HashEmbedder()
    python = await _split_store(migrated_dsn, embedder, sent, keyword_scoring="python", **settings)
    sql = await MemoryStore.open(
        store_settings(keyword_scoring="sql", hybrid_split=False, **settings),
        dsn=migrated_dsn,
        embedder=embedder,
    )
    try:
        await python.remember(_corpus())
        for n in range(0, 90, 10):  # new versions of the keyed facts
            namespace = "kb" if n % 3 else "kb2"
            await python.remember(
                f"revised note {n} on tides and orchards", namespace=namespace, key=f"fact-{n}"
            )
        await python.index(rebuild=plan == "graph")
        await python.remember("a late note on tides, after the move", namespace="kb")
        connection = await asyncpg.connect(migrated_dsn)
        try:  # expired, not yet swept
            await connection.execute(
                "UPDATE memories SET expires_at = now() - interval '1 minute' "
                "WHERE content LIKE '%word3 %' AND namespace = 'kb'"
            )
        finally:
            await connection.close()
        yield python, sql, sent
    finally:
        await python.close()
        await sql.close()


def _scored_in_python(sent: list[str]) -> bool:
    return any("uuid_send" in statement for statement in sent)


CASES: list[dict[str, Any]] = [
    {},
    {"k": 3},
    {"k": 40},
    {"filter": {"topic": "tides"}},
    {"filter": {"importance": {"gte": 0.5}}},
    {"created_after": NOW - timedelta(days=4)},
    {"valid_at": NOW - timedelta(days=3)},
    {"include_invalid": True},
    {"as_of": NOW},
    {"diversity": 0.6},
    {"min_score": 0.0},
    {"vector_weight": 0.5, "keyword_weight": 2.0},
]


@pytest.mark.parametrize(
    ("stores", "cases"), [("postings", CASES), ("graph", CASES[:4])], indirect=["stores"]
)
async def test_python_scoring_finds_the_sql_plans_hits(
    stores: Stores, cases: list[dict[str, Any]]
) -> None:
    python, sql, sent = stores
    for mode in ("keyword", "hybrid"):
        for namespaces in (["kb"], ["kb", "kb2"]):
            for options in cases:
                if mode == "keyword" and "min_score" in options:
                    continue  # min_score bounds vector similarity
                # Common words, and none of the corpus's for the first scope only.
                for query in QUERIES[1:] if not options else QUERIES[1:2]:
                    sent.clear()
                    ours = await python.recall(query, namespace=namespaces, mode=mode, **options)
                    theirs = await sql.recall(query, namespace=namespaces, mode=mode, **options)
                    where = (mode, query, namespaces, options)
                    # Past versions have no postings: their BM25 stays the SQL plan's.
                    assert _scored_in_python(sent) == ("as_of" not in options), where
                    assert _hits(ours) == _hits(theirs), where
                    assert (ours.mode, ours.pending) == (theirs.mode, theirs.pending), where
    expired = await python.recall("word3", namespace="kb", k=40, mode="keyword")
    assert expired.hits
    assert all("word3 " not in hit.content for hit in expired.hits)


async def test_hostile_query_text_stays_lexemes_in_the_python_plan(stores: Stores) -> None:
    """Quotes, backslashes, tsquery operators and SQL in a query reach the postings statement
    (and its tsquery over the rows not moved yet) as lexemes only: the same hits as the SQL
    plan, and words among them still found."""
    python, sql, sent = stores
    for query in (
        "O'Reilly's \\'; DROP TABLE memories; -- tides",
        "tides:* | orchards & !glaciers <-> (x)",
        "\\ \\' '' \\\\",
        "the and of",  # stopwords only: no lexeme at all
    ):
        for mode in ("keyword", "hybrid"):
            sent.clear()
            ours = await python.recall(query, namespace="kb", mode=mode)  # type: ignore[arg-type]
            theirs = await sql.recall(query, namespace="kb", mode=mode)  # type: ignore[arg-type]
            assert _scored_in_python(sent), (query, mode)
            assert _hits(ours) == _hits(theirs), (query, mode)
            if "tides" in query and mode == "keyword":
                assert any("tides" in hit.content for hit in ours.hits)


async def test_too_few_passing_candidates_send_every_scored_memory(stores: Stores) -> None:
    """A narrow filter drops most of the best-scored memories: the winners' statement, given
    the best 2 x k, finds fewer than k and is sent again with every scored memory."""
    python, sql, sent = stores
    for mode in ("keyword", "hybrid"):
        sent.clear()
        options: dict[str, Any] = {"k": 5, "mode": mode, "filter": {"topic": "printers"}}
        ours = await python.recall("note on tides and orchards", namespace="kb", **options)
        theirs = await sql.recall("note on tides and orchards", namespace="kb", **options)
        winners = [statement for statement in sent if bm25.CHECKED in statement]
        assert len(winners) == (2 if mode == "keyword" else 1), mode
        assert _hits(ours) == _hits(theirs), mode
        assert len(ours.hits) == 5
        assert all(hit.metadata["topic"] == "printers" for hit in ours.hits)


class _AfterPostings:
    """A store's pool that runs ``change`` on the last of ``best`` right after the postings
    statement, on another connection."""

    def __init__(self, pool: Any, connection: Any, change: str, best: list[Any]) -> None:
        self._pool, self._connection, self._change, self._best = pool, connection, change, best

    async def fetch(self, statement: str, *args: Any) -> Any:
        rows = await self._pool.fetch(statement, *args)
        if "uuid_send" in statement:
            await self._connection.execute(self._change, self._best[-1])
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def test_a_winner_that_expires_after_the_postings_were_read_gives_way(
    stores: Stores, migrated_dsn: str
) -> None:
    """The best-scored memory expires between the postings statement and the winners': it is
    not a hit, and the hits are those the SQL plan finds once it has expired."""
    python, sql, _ = stores
    pool = python._query._pool
    connection = await asyncpg.connect(migrated_dsn)
    best: list[Any] = []

    try:
        for mode, query in (("keyword", "tides and orchards"), ("hybrid", "ledgers glaciers")):
            before = await python.recall(query, namespace="kb", mode=mode, k=5)  # type: ignore[arg-type]
            best.append(before.hits[0].id)
            python._query._pool = _AfterPostings(  # type: ignore[assignment]
                pool, connection, "UPDATE memories SET expires_at = now() WHERE id = $1", best
            )
            # One of the two connections held: hybrid recall stays one statement after the
            # postings' (split, its vector ranking could run before the expiry, and the
            # fusion's standardisation would count the expired row, as recall/split.py says).
            async with pool.acquire():
                ours = await python.recall(query, namespace="kb", mode=mode, k=5)  # type: ignore[arg-type]
            python._query._pool = pool
            theirs = await sql.recall(query, namespace="kb", mode=mode, k=5)  # type: ignore[arg-type]
            assert best[-1] not in [hit.id for hit in ours.hits], mode
            assert _hits(ours) == _hits(theirs), mode
            assert len(ours.hits) == 5
    finally:
        python._query._pool = pool
        await connection.close()


async def test_a_winner_forgotten_after_the_postings_were_read_gives_way(
    stores: Stores, migrated_dsn: str
) -> None:
    """The best-scored memory is deleted between the postings statement and the winners': no
    exclusion set can name it (its row is gone), so the winners' statement skips it as it
    reads the hits; the others keep their order (the scores came from the postings read
    before), and k are found."""
    python, _, _ = stores
    pool = python._query._pool
    connection = await asyncpg.connect(migrated_dsn)
    best: list[Any] = []

    try:
        for mode, query in (("keyword", "tides and orchards"), ("hybrid", "ledgers glaciers")):
            before = await python.recall(query, namespace="kb", mode=mode, k=5)  # type: ignore[arg-type]
            best.append(before.hits[0].id)
            python._query._pool = _AfterPostings(  # type: ignore[assignment]
                pool, connection, "DELETE FROM memories WHERE id = $1", best
            )
            async with pool.acquire():  # one statement after the postings' (see above)
                ours = await python.recall(query, namespace="kb", mode=mode, k=5)  # type: ignore[arg-type]
            python._query._pool = pool
            found = [hit.id for hit in ours.hits]
            assert best[-1] not in found, mode
            assert found[:4] == [hit.id for hit in before.hits[1:]], mode
            assert len(found) == 5, mode
    finally:
        python._query._pool = pool
        await connection.close()


async def test_current_memories_are_checked_against_the_exclusion_set(stores: Stores) -> None:
    """Hybrid's winners' statement checks the keyword candidates of one namespace's current
    memories against its ids out of scope (no memory read); a filter, a created range, a past
    validity or several namespaces probe each candidate's row, as keyword mode does."""
    python, _, sent = stores
    cases: list[tuple[list[str], dict[str, Any], bool]] = [
        (["kb"], {}, True),
        (["kb"], {"include_invalid": True}, True),
        (["kb"], {"filter": {"topic": "tides"}}, False),
        (["kb"], {"created_after": NOW - timedelta(days=4)}, False),
        (["kb"], {"valid_at": NOW - timedelta(days=3)}, False),
        (["kb", "kb2"], {}, False),
    ]
    for namespaces, options, excluded in cases:
        for mode in ("keyword", "hybrid"):
            sent.clear()
            await python.recall("tides and orchards", namespace=namespaces, mode=mode, **options)  # type: ignore[arg-type]
            winners = next(statement for statement in sent if bm25.CHECKED in statement)
            assert ("NOT IN" in winners) == (excluded and mode == "hybrid"), (options, mode)


def test_ties_are_ordered_by_id_as_postgresql_orders_uuids() -> None:
    """Equal scores are ordered by the id's bytes (uuid order), across namespaces too; and
    postings of one memory under two lexemes sum into one score."""
    low, high = bytes(15) + b"\x01", b"\x80" + bytes(15)
    rows = [
        {"namespace": "b", "lexeme": "x", "ids": high, "tfs": b"\0\0\0\1", "dls": b"\0\0\0\4"},
        {"namespace": "a", "lexeme": "x", "ids": low, "tfs": b"\0\0\0\1", "dls": b"\0\0\0\4"},
    ]
    for row in rows:
        row["documents"] = 10
    scored = bm25.ranked(rows, 0.9, 0.4)
    top = scored.top(2)
    assert [row["id"].bytes for row in top] == [low, high]
    assert [row["namespace"] for row in top] == ["a", "b"]
    assert top[0]["score"] == top[1]["score"] > 0
    alone = bm25.ranked([rows[1]], 0.9, 0.4).top(5)[0]["score"]
    both = bm25.ranked([{**rows[1], "lexeme": "y"}, rows[1]], 0.9, 0.4).top(5)
    assert len(both) == 1
    assert both[0]["score"] == pytest.approx(2 * alone, rel=1e-12)
