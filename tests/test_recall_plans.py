"""Recall is exact inside small namespaces of a large table and near-exact in large ones."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgrecall import MemoryInput, MemoryStore
from pgrecall.db.pool import create_pool
from pgrecall.db.schema import HNSW_INDEX
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.recall.service import QueryService
from pgrecall.recall.sizes import NamespaceSizes
from pgrecall.recall.sql import row_limit
from pgrecall.records import RecallOptions

from .conftest import store_settings
from .fakes import HashEmbedder, text_vector

BIG = 2500
SMALL = 40
THRESHOLD = 500


@pytest.fixture
async def plan_store(migrated_dsn: str) -> AsyncIterator[MemoryStore]:
    store = await MemoryStore.open(
        # The hash embedder's vectors are uniform on the sphere, the hardest case for a graph:
        # a wider candidate list than the default (tuned on clustered vectors) keeps it near exact.
        store_settings(exact_scan_max_rows=THRESHOLD, ingest_chunk_size=2000, hnsw_ef_search=200),
        dsn=migrated_dsn,
        embedder=HashEmbedder(),
    )
    yield store
    await store.close()


async def _analyze(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("ANALYZE memories")
    finally:
        await connection.close()


def _true_top(texts: list[str], query: str, k: int) -> list[str]:
    matrix = np.stack([text_vector(text) for text in texts])
    scores = matrix @ text_vector(query)
    return [texts[i] for i in np.argsort(-scores, kind="stable")[:k]]


async def test_small_namespace_in_a_large_table_gets_the_true_top_k(
    plan_store: MemoryStore, migrated_dsn: str
) -> None:
    big = [f"big memory {i}" for i in range(BIG)]
    small = [f"small memory {i}" for i in range(SMALL)]
    await plan_store.remember(big, namespace="everyone")
    await plan_store.remember(small, namespace="tiny")
    await _analyze(migrated_dsn)

    for query in ("what is small?", "query two", "a third question"):
        hits = await plan_store.recall(query, namespace="tiny", k=10, mode="vector")
        assert hits.exact
        assert [hit.content for hit in hits] == _true_top(small, query, 10)


async def _graph_rows(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT namespace, count(*) AS n FROM memories WHERE hnsw_indexed GROUP BY namespace"
        )
    finally:
        await connection.close()
    return {row["namespace"]: row["n"] for row in rows}


async def test_large_namespace_uses_the_index_and_stays_near_exact(
    plan_store: MemoryStore, migrated_dsn: str
) -> None:
    big = [f"big memory {i}" for i in range(BIG)]
    await plan_store.remember(big, namespace="everyone")
    await plan_store.remember([f"other {i}" for i in range(500)], namespace="neighbour")
    # The store's own indexer may take in part of the namespace before this call does (under
    # load it had taken 9 and 580 rows), so the graph's rows are counted, not index()'s return;
    # index() waits for the batch that indexer holds.
    await plan_store.index()
    graph = await _graph_rows(migrated_dsn)
    assert graph == {"everyone": BIG}  # not the neighbour
    overlaps = []
    for query in (f"question {i}" for i in range(10)):
        approximate = await plan_store.recall(query, namespace="everyone", k=10, mode="vector")
        exact = await plan_store.recall(
            query, namespace="everyone", k=10, exact=True, mode="vector"
        )
        assert not approximate.exact
        assert exact.exact
        assert len(approximate) == 10
        assert [hit.content for hit in exact] == _true_top(big, query, 10)
        overlaps.append(len({h.id for h in approximate} & {h.id for h in exact}) / 10)
        assert all(hit.namespace == "everyone" for hit in approximate)
    assert sum(overlaps) / len(overlaps) >= 0.95


async def test_recall_reuses_a_generic_plan_only_inside_small_namespaces(
    plan_store: MemoryStore, migrated_dsn: str
) -> None:
    # Planning a recall statement costs 0.3 ms and more; a small namespace's statement settles
    # on one generic plan when the namespaces are of like sizes. (With skewed sizes the
    # statistics put a generic plan's namespace at the average size, above a small one's, and
    # PostgreSQL keeps planning each call.) A large namespace's statement keeps its LIMITs bound,
    # so that even a generic plan, which knows neither the namespace nor the LIMITs, walks the
    # graph: with the LIMITs written out, one took a 100k namespace for an average one and
    # sorted it exactly (100 ms).
    settings = plan_store.settings

    async def plans_after_ten_rounds(namespace: str) -> list[asyncpg.Record]:
        pool = await create_pool(
            migrated_dsn, min_size=1, max_size=1, hnsw_ef_search=settings.hnsw_ef_search
        )
        try:
            service = QueryService(
                pool,
                plan_store.embedder,
                SpaceRegistry(pool, plan_store.text_identity),
                NamespaceSizes(pool, settings.exact_scan_max_rows),
                settings,
            )
            for i in range(10):
                for mode in ("vector", "keyword", "hybrid"):
                    options = RecallOptions(mode=mode)
                    assert len(await service.recall(f"memory {i}", namespace, options)) == 10
            return await pool.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%AS pending%'"
                " AND statement NOT LIKE '%pg_prepared_statements%'"
            )
        finally:
            await pool.close()

    for group in range(20):
        await plan_store.remember(
            [f"small memory {group} {i}" for i in range(SMALL)], namespace=f"tiny-{group}"
        )
    await _analyze(migrated_dsn)  # as autovacuum would: the outcome must not hang on its timing
    small = await plans_after_ten_rounds("tiny-3")
    await plan_store.remember([f"big memory {i}" for i in range(BIG)], namespace="everyone")
    await plan_store.index()
    await _analyze(migrated_dsn)
    large = await plans_after_ten_rounds("everyone")
    assert len(small) == len(large) == 3  # one statement per mode
    assert all(plan["generic_plans"] >= 5 for plan in small), [
        (p["generic_plans"], p["custom_plans"]) for p in small
    ]
    walking = [plan["statement"] for plan in large if "hnsw_indexed" in plan["statement"]]
    assert len(walking) == 2  # vector and hybrid
    connection = await asyncpg.connect(migrated_dsn)
    try:
        # EXPLAIN (GENERIC_PLAN) of a statement with parameters, run from SQL: the extended
        # protocol would ask for their values.
        await connection.execute(
            "CREATE FUNCTION pg_temp.generic_plan(statement text) RETURNS SETOF text"
            " LANGUAGE plpgsql AS"
            " $$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN (GENERIC_PLAN) ' || statement; END $$"
        )
        for statement in walking:
            plan = await connection.fetch("SELECT * FROM pg_temp.generic_plan($1)", statement)
            assert any(HNSW_INDEX in row[0] for row in plan), "\n".join(row[0] for row in plan)
    finally:
        await connection.close()


names = st.text(alphabet="abcdefgh", min_size=1, max_size=6)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    layout=st.dictionaries(
        names, st.lists(st.integers(0, 50), min_size=1, max_size=8), min_size=2, max_size=5
    ),
    probe=st.integers(0, 4),
)
async def test_namespaces_never_leak(
    plan_store: MemoryStore, layout: dict[str, list[int]], probe: int
) -> None:
    run = f"run{np.random.default_rng().integers(1 << 40)}-"
    items = [
        MemoryInput(f"shared text {n}", namespace=run + name)
        for name, numbers in layout.items()
        for n in numbers
    ]
    await plan_store.remember(items)
    target = sorted(layout)[probe % len(layout)]
    hits = await plan_store.recall("shared text 7", namespace=run + target, k=50)
    assert {hit.namespace for hit in hits} == {run + target}
    assert sorted(hit.content for hit in hits) == sorted(
        {f"shared text {n}" for n in layout[target]}
    )
    pair = sorted(layout)[:2]
    both = await plan_store.recall("shared text", namespace=[run + n for n in pair], k=100)
    assert {hit.namespace for hit in both} <= {run + n for n in pair}


@pytest.mark.parametrize("count", [True, -1, "10", 10.0, "10; DROP TABLE memories"])
def test_a_row_limit_is_written_only_from_a_non_negative_int(count: object) -> None:
    with pytest.raises(ValueError, match="row limit"):
        row_limit(count)  # type: ignore[arg-type]
