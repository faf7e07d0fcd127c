"""Recall is exact inside small namespaces of a large table and near-exact in large ones."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgrecall import MemoryInput, MemoryStore
from pgrecall.background.expiry import unexpired
from pgrecall.db.plan_cache import PlanCacheConnection, custom_plans, generic_plans
from pgrecall.db.pool import create_pool
from pgrecall.db.schema import HNSW_INDEX
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.recall.plans import GenericPlanGate
from pgrecall.recall.service import QueryService
from pgrecall.recall.sizes import NamespaceSizes
from pgrecall.recall.sql import row_limit
from pgrecall.records import RecallOptions

from .conftest import store_settings
from .fakes import HashEmbedder, text_vector

BIG = 2500
SMALL = 40
THRESHOLD = 500
# EXPLAIN (GENERIC_PLAN) of a statement with parameters, run from SQL: the extended protocol
# would ask for their values.
_GENERIC_PLAN_FUNCTION = (
    "CREATE FUNCTION pg_temp.generic_plan(statement text) RETURNS SETOF text"
    " LANGUAGE plpgsql AS"
    " $$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN (GENERIC_PLAN) ' || statement; END $$"
)
_GENERIC_ROWS = re.compile(r"rows=(\d+)")


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


async def _twenty_small_namespaces(store: MemoryStore, dsn: str) -> None:
    """Twenty namespaces ``tiny-0``..``tiny-19`` of SMALL memories, analysed (as autovacuum
    would: an outcome must not hang on its timing)."""
    for group in range(20):
        await store.remember(
            [f"small memory {group} {i}" for i in range(SMALL)], namespace=f"tiny-{group}"
        )
    await _analyze(dsn)


async def _plans_after_rounds(
    store: MemoryStore, dsn: str, namespace: str, rounds: int, pattern: str = "AS pending"
) -> list[asyncpg.Record]:
    """The statements holding ``pattern`` (the recall's, by default) prepared on a
    one-connection pool after ``rounds`` recalls of ``namespace`` in each mode, with their
    generic and custom plans counted."""
    settings = store.settings
    pool = await create_pool(dsn, min_size=1, max_size=1, hnsw_ef_search=settings.hnsw_ef_search)
    try:
        service = QueryService(
            pool,
            store.embedder,
            SpaceRegistry(pool, store.text_identity),
            NamespaceSizes(pool, settings.exact_scan_max_rows),
            settings,
        )
        for i in range(rounds):
            for mode in ("vector", "keyword", "hybrid"):
                options = RecallOptions(mode=mode)
                assert len(await service.recall(f"memory {i}", namespace, options)) == 10
        return await pool.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%' || $1 || '%'"
            " AND statement NOT LIKE '%pg_prepared_statements%'",
            pattern,
        )
    finally:
        await pool.close()


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
    await _twenty_small_namespaces(plan_store, migrated_dsn)
    small = await _plans_after_rounds(plan_store, migrated_dsn, "tiny-3", 10)
    await plan_store.remember([f"big memory {i}" for i in range(BIG)], namespace="everyone")
    await plan_store.index()
    await _analyze(migrated_dsn)
    large = await _plans_after_rounds(plan_store, migrated_dsn, "everyone", 10)
    assert len(small) == len(large) == 3  # one statement per mode
    assert all(plan["generic_plans"] >= 5 for plan in small), [
        (p["generic_plans"], p["custom_plans"]) for p in small
    ]
    walking = [plan["statement"] for plan in large if "hnsw_indexed" in plan["statement"]]
    assert len(walking) == 2  # vector and hybrid
    connection = await asyncpg.connect(migrated_dsn)
    try:
        await connection.execute(_GENERIC_PLAN_FUNCTION)
        for statement in walking:
            plan = await connection.fetch("SELECT * FROM pg_temp.generic_plan($1)", statement)
            assert any(HNSW_INDEX in row[0] for row in plan), "\n".join(row[0] for row in plan)
    finally:
        await connection.close()


async def test_a_small_namespace_runs_generic_plans_from_its_first_recall_where_they_fit(
    plan_store: MemoryStore, migrated_dsn: str
) -> None:
    # Twenty namespaces of 40: a generic plan expects 40 rows of any, a small namespace's.
    await _twenty_small_namespaces(plan_store, migrated_dsn)
    plans = await _plans_after_rounds(plan_store, migrated_dsn, "tiny-3", 3)
    assert len(plans) == 3
    # Forced: not the five custom plans PostgreSQL plans first when the choice is its own.
    assert [(p["generic_plans"], p["custom_plans"]) for p in plans] == [(3, 0)] * 3
    # The namespace's bounded count too (recall/sizes.py), counted once and cached.
    counts = await _plans_after_rounds(plan_store, migrated_dsn, "tiny-3", 3, "AS bounded")
    assert [(p["generic_plans"], p["custom_plans"]) for p in counts] == [(1, 0)]


async def test_beside_a_far_larger_namespace_postgresql_keeps_the_choice(
    plan_store: MemoryStore, migrated_dsn: str
) -> None:
    # One namespace of 2,500 and one of 40: a generic plan expects 1,270 rows of either, above
    # the 500 the exact plans are written for.
    await plan_store.remember([f"big memory {i}" for i in range(BIG)], namespace="everyone")
    await plan_store.remember([f"small memory {i}" for i in range(SMALL)], namespace="tiny")
    await _analyze(migrated_dsn)
    plans = await _plans_after_rounds(plan_store, migrated_dsn, "tiny", 3)
    assert len(plans) == 3
    assert all(p["custom_plans"] >= 1 for p in plans), [
        (p["generic_plans"], p["custom_plans"]) for p in plans
    ]


@pytest.mark.parametrize(
    "sizes",
    [[SMALL] * 20, [BIG, SMALL], [BIG, SMALL, SMALL, 7, 300], [5]],
    ids=["like-sized", "one-far-larger", "mixed", "one"],
)
async def test_the_gate_expects_the_rows_the_planner_expects_of_a_namespace(
    plan_store: MemoryStore, migrated_dsn: str, sizes: list[int]
) -> None:
    for n, size in enumerate(sizes):
        await plan_store.remember([f"memory {n} {i}" for i in range(size)], namespace=f"ns-{n}")
    await _analyze(migrated_dsn)
    connection = await asyncpg.connect(migrated_dsn)
    try:
        # EXPLAIN (GENERIC_PLAN) run from SQL: the extended protocol would ask for $1's value.
        await connection.execute(_GENERIC_PLAN_FUNCTION)
        plan = await connection.fetchval(
            "SELECT * FROM pg_temp.generic_plan($1)",
            "SELECT id FROM memories WHERE namespace = $1",
        )
    finally:
        await connection.close()
    match = _GENERIC_ROWS.search(plan)
    assert match is not None, plan
    gate = GenericPlanGate(plan_store._pool, THRESHOLD)
    expected = await gate.average_namespace()
    assert expected is not None
    # The planner rounds its estimate to whole rows.
    assert abs(expected - int(match.group(1))) <= 1, (expected, plan)
    assert await gate.open() is (expected <= THRESHOLD)


@pytest.mark.engines
async def test_the_gate_opens_on_statistics_and_never_on_citus(
    plan_store: MemoryStore, migrated_dsn: str, engine: str
) -> None:
    gate = GenericPlanGate(plan_store._pool, THRESHOLD)
    assert not await gate.open()  # no statistics yet
    for n in range(3):
        await plan_store.remember([f"memory {n} {i}" for i in range(SMALL)], namespace=f"ns-{n}")
    await _analyze(migrated_dsn)
    # Read again (the gate's cache is per process and minute): Citus plans for the shards.
    assert await GenericPlanGate(plan_store._pool, THRESHOLD).open() is (engine == "postgres")
    hits = await plan_store.recall("memory 1", namespace="ns-1", k=5, mode="hybrid")
    assert len(hits) == 5


async def test_remembers_and_small_recalls_keep_a_connection_in_one_mode(
    plan_store: MemoryStore, migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _twenty_small_namespaces(plan_store, migrated_dsn)
    modes: list[str] = []

    async def counted(self: PlanCacheConnection, query: str, *args: object) -> str:
        if "plan_cache_mode" in query:
            modes.append(query)
        return await asyncpg.Connection.execute(self, query, *args)

    monkeypatch.setattr(PlanCacheConnection, "execute", counted)
    store = await MemoryStore.open(
        store_settings(
            exact_scan_max_rows=THRESHOLD, pool_min_size=1, pool_max_size=1, worker=False
        ),
        dsn=migrated_dsn,
        embedder=HashEmbedder(),
    )
    try:
        # The first round reads what is cached afterwards (the space, the gate's statistics).
        for i in range(11):
            if i == 1:
                modes.clear()
            await store.remember(f"a new memory {i}", namespace="tiny-3")
            assert await store.recall(f"memory {i}", namespace="tiny-4", k=3, mode="hybrid")
    finally:
        await store.close()
    # A remember's lookup and write, and a recall of a small namespace with its count, all run
    # generic plans: the connection is never set again.
    assert modes == []


async def test_a_backlog_in_another_namespace_is_not_read_by_a_recall(
    plan_store: MemoryStore, migrated_dsn: str
) -> None:
    # Every recall counts its scope's pending memories; the worker's queue index holds those of
    # every namespace, so the count read them all (60,600 of another namespace made recall
    # 6.6x slower after a rollback, benchmarks/RESULTS.md issue 21 session 17).
    await plan_store.remember([f"memory {i}" for i in range(SMALL)], namespace="mine")
    await plan_store.remember([f"backlog {i}" for i in range(2000)], namespace="backlog")
    connection = await asyncpg.connect(migrated_dsn)
    try:
        # Waiting for a new model, as after a rollback.
        await connection.execute(
            "UPDATE memories SET status = 'pending', embedding = NULL, space_id = NULL"
            " WHERE namespace = 'backlog'"
        )
        await connection.execute("VACUUM (ANALYZE) memories")
        plan = await connection.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM memories"
            f" WHERE namespace = ANY($1) AND status = 'pending' AND {unexpired()}",
            ["mine"],
        )
    finally:
        await connection.close()
    scans = _memories_scans(json.loads(plan)[0]["Plan"])
    assert [scan["Index Name"] for scan in scans] == ["memories_pending_namespace"], scans
    assert sum(scan.get("Rows Removed by Filter", 0) for scan in scans) == 0, scans
    hits = await plan_store.recall("memory 3", namespace="mine", k=3)
    assert (len(hits), hits.pending) == (3, 0)


def _memories_scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's scans of ``memories``."""
    own = [node] if node.get("Relation Name") == "memories" else []
    return own + [scan for child in node.get("Plans", []) for scan in _memories_scans(child)]


async def test_connections_run_generic_plans_inside_the_block_only(migrated_dsn: str) -> None:
    pool = await create_pool(migrated_dsn, min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SHOW plan_cache_mode") == "auto"
        with generic_plans():
            assert await pool.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            # The tasks the block starts wish the same.
            modes = await asyncio.gather(pool.fetchval("SHOW plan_cache_mode"))
            assert modes == ["force_generic_plan"]
            # Custom plans inside, for a statement whose values' sizes decide its plan.
            with custom_plans():
                assert await pool.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
            assert await pool.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        # The same connection, handed out again outside the block.
        assert await pool.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await pool.close()


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


async def test_the_winners_of_a_large_namespace_run_a_generic_plan_beside_a_backlog(
    plan_store: MemoryStore, migrated_dsn: str
) -> None:
    # BM25 scored in Python, then one statement reads the winners it names and counts the
    # pending memories. Beside another namespace's backlog the count's generic plan is priced
    # at an average namespace's backlog, and PostgreSQL planned every call afresh (keyword
    # recall 1.19-1.23x in switch_cost's case (a) after a rollback): it runs generic, forced.
    await plan_store.remember([f"big memory {i}" for i in range(BIG)], namespace="everyone")
    await plan_store.index()
    await plan_store.remember([f"backlog {i}" for i in range(2000)], namespace="backlog")
    connection = await asyncpg.connect(migrated_dsn)
    try:
        await connection.execute(
            "UPDATE memories SET status = 'pending', embedding = NULL, space_id = NULL"
            " WHERE namespace = 'backlog'"
        )
        await connection.execute("VACUUM (ANALYZE) memories")
    finally:
        await connection.close()
    plans = await _plans_after_rounds(plan_store, migrated_dsn, "everyone", 8, "keyword_checked")
    # Hybrid on one connection computes its vector ranking in the same statement, through the
    # graph: that one stays PostgreSQL's choice.
    given = [p for p in plans if "hnsw_indexed" not in p["statement"]]
    assert (len(plans), len(given)) == (2, 1), [p["statement"] for p in plans]
    assert (given[0]["generic_plans"], given[0]["custom_plans"]) == (8, 0)


async def test_the_whole_list_of_scored_memories_is_read_on_custom_plans(
    migrated_dsn: str,
) -> None:
    # Four namespaces where every memory shares the query's word, three memories with the tag:
    # the shortened list (2 x k) holds too few in scope, so the whole list (2,400) is sent.
    # A generic plan takes it for 10 rows and probes every id; planned with it, the statement
    # can read the filter's index instead.
    settings = store_settings(
        keyword_postings_min_rows=100, exact_scan_max_rows=THRESHOLD, worker=False
    )
    store = await MemoryStore.open(settings, dsn=migrated_dsn, embedder=HashEmbedder())
    try:
        for n in range(4):
            await store.remember(
                [
                    MemoryInput(
                        content=f"memory {n} {i}",
                        metadata={"tag": "rare" if (n, i) in {(0, 7), (2, 9), (3, 1)} else "x"},
                    )
                    for i in range(600)
                ],
                namespace=f"ns-{n}",
            )
        await store.index()
    finally:
        await store.close()
    await _analyze(migrated_dsn)
    pool = await create_pool(migrated_dsn, min_size=1, max_size=1)
    try:
        service = QueryService(
            pool,
            HashEmbedder(),
            SpaceRegistry(pool, store.text_identity),
            NamespaceSizes(pool, settings.exact_scan_max_rows),
            settings,
        )
        names = [f"ns-{n}" for n in range(4)]
        options = RecallOptions(mode="keyword", filter={"tag": "rare"})
        for _ in range(6):
            hits = await service.recall("memory", names, options)
            assert sorted(hit.content for hit in hits) == ["memory 0 7", "memory 2 9", "memory 3 1"]
        plans = await pool.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%keyword_checked%'"
            " AND statement NOT LIKE '%pg_prepared_statements%'"
        )
    finally:
        await pool.close()
    # One statement: the shortened list on its generic plan, the whole list planned each time.
    assert [(p["generic_plans"], p["custom_plans"]) for p in plans] == [(6, 6)]
