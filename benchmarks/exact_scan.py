"""The exact scan of a namespace of long documents, and the levers that make it cheaper.

    python -m benchmarks.exact_scan [--size 5183] [--queries 100] [--rounds 3]

One namespace of long documents (SciFact's abstracts when ../shared is beside the repository,
else ``--size`` documents of 200 Zipf words) written through ``remember``, then the top 10 by
inner product for each query, every leg a prepared statement on one connection, the legs
alternated query by query (so load moves them alike). The vectors are the local model's when
``benchmarks.longdocs`` has cached SciFact's (real claims as queries), else synthetic ones
(common.py). Each lever is a relation the script builds beside ``memories``:

- ``today``: recall's exact ranking as the service builds it (``recall.sql.nearest``), over
  ``memories``, whose long rows stay inline (migration 0006): one row a page.
- ``content out of line``: the same statement over a copy of ``memories`` whose ``content`` is
  stored out of line (``STORAGE EXTERNAL``, ``toast_tuple_target`` half a page) and whose
  tsvector stays inline (``STORAGE MAIN``), with every index of ``memories``: two rows a page.
- ``narrow table``: (namespace, id, vector, the scope's columns), as a side table kept by the
  write path would hold them.
- ``halfvec + exact re-rank``: half-precision vectors (namespace, id, halfvec) scanned, every
  row whose approximate score is within ``HALF_MARGIN`` of the 10th best re-ranked with its
  full vector from ``memories`` (one index probe each: 14 rows for the median SciFact claim):
  exact by construction (see ``HALF_MARGIN``).
- ``binary + re-rank``: bit vectors (``binary_quantize``), the best ``BIT_CANDIDATES`` by Hamming
  distance re-ranked with the full vector: approximate (how often its top 10 is the exact one is
  printed).
- ``graph, ef_search N``: an HNSW index on the narrow table's vectors, for the threshold between
  the exact scan and the graph at this size.

Prints p50/p99, shared buffers read per query, the share of queries whose top 10 is exactly
today's, and each leg's p50 over today's; then keyword recall's statement over ``memories``
and over the out-of-line copy (migration 0006 kept rows inline for the tsvector's sake).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence

import asyncpg
import numpy as np

from benchmarks.common import (
    CONTENT_ONLY,
    DIMENSIONS,
    OUT,
    SCIFACT,
    Corpus,
    PrecomputedEmbedder,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    sentences,
    unit_vectors,
)
from benchmarks.recall_latency import make_queries
from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.db.params import SqlParams
from pgrecall.db.vectors import register_vector_codec
from pgrecall.recall.sql import Scope, keyword_ranking, nearest, query_terms, recall_scope
from pgrecall.records import RecallOptions

NAMESPACE = "long"
K = 10
# |q.x - h(q).h(x)| for unit q, x and their halfvec roundings h: each component rounds with a
# relative error of at most 2^-11, so each side's error vector has norm <= 2^-11 and the score
# moves by at most ~2 * 2^-11 = 0.00098 (plus float32 accumulation, ~1e-5). A row whose exact
# score beats the 10th exact one has an approximate score above the 10th approximate one minus
# twice that: the margin below keeps every such row, so the re-ranked top 10 is exact.
HALF_MARGIN = 0.0025
BIT_CANDIDATES = 100
EF_SEARCHES = (40, 100, 200)


def _documents(size: int) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Texts and vectors of the documents and of the queries: SciFact's first ``size`` abstracts
    (their rows' layout is the case), with the local model's vectors and the test claims if
    benchmarks.longdocs cached them, else synthetic vectors (common.py) and queries near them;
    without SciFact, ``size`` documents of 200 Zipf words."""
    from benchmarks.longdocs import scifact_cache

    generator = np.random.default_rng(5)
    if SCIFACT.exists():
        from benchmarks.scifact import _load

        texts = [m["text"] for m in _load("memories.jsonl")][:size]
        cached = scifact_cache()
        if cached is not None:
            claims = [q["question"] for q in _load("queries.jsonl")]
            return texts, cached[0][:size], claims, cached[1]
    else:
        texts = sentences(size, generator, tag="d", words=200)
    vectors = unit_vectors(len(texts), generator)
    data = Corpus(texts, [{}] * len(texts), [NAMESPACE] * len(texts), vectors)
    queries = make_queries(data, NAMESPACE, min(len(texts), 300))
    # A query's words are four of its document's: the keyword leg reads what they match.
    return texts, data.vectors, queries.texts, queries.vectors


async def _load_namespace(dsn: str, texts: list[str], vectors: np.ndarray) -> None:
    embedder = PrecomputedEmbedder()
    embedder.learn(texts, vectors)
    settings = load_settings(database_url=dsn, worker=False, auto_migrate=False, **CONTENT_ONLY)
    store = await MemoryStore.open(settings, embedder=embedder)
    try:
        for start in range(0, len(texts), 500):
            batch = texts[start : start + 500]
            await store.remember([MemoryInput(text) for text in batch], namespace=NAMESPACE)
    finally:
        await store.close()


# The columns a copy of memories is written with (``search`` is generated).
_COPIED = (
    "namespace, id, content, content_hash, key, metadata, embedding, space_id, created_at, "
    "updated_at, expires_at, status, embed_attempts, embed_error, search_text, embed_after, "
    "hnsw_indexed, version, version_since, valid_from, valid_until, invalid_reason"
)


async def _levers(connection: asyncpg.Connection) -> None:
    """The relations of the levers, filled from ``memories``; then VACUUM ANALYZE of each."""
    await connection.execute(f"""
        CREATE TABLE out_of_line (LIKE memories INCLUDING ALL) WITH (toast_tuple_target = 4080);
        ALTER TABLE out_of_line ALTER COLUMN content SET STORAGE EXTERNAL,
                                ALTER COLUMN search SET STORAGE MAIN;
        INSERT INTO out_of_line ({_COPIED}) SELECT {_COPIED} FROM memories;
        CREATE TABLE narrow AS
            SELECT namespace, id, embedding::vector({DIMENSIONS}) AS embedding, space_id,
                   expires_at, valid_from, valid_until FROM memories;
        ALTER TABLE narrow ADD PRIMARY KEY (namespace, id);
        CREATE TABLE half AS
            SELECT namespace, id, embedding::halfvec({DIMENSIONS}) AS embedding FROM memories;
        CREATE TABLE bits AS
            SELECT namespace, id, binary_quantize(embedding)::bit({DIMENSIONS}) AS embedding
            FROM memories;
        SET maintenance_work_mem = '512MB';
        CREATE INDEX narrow_hnsw ON narrow USING hnsw (embedding vector_ip_ops);
    """)
    for table in ("memories", "out_of_line", "narrow", "half", "bits"):
        await connection.execute(f"VACUUM ANALYZE {table}")


def _exact(source: str) -> str:
    """Recall's exact ranking (``recall.sql.nearest``) over ``source``, top 10 ids."""
    params = SqlParams()
    scope = recall_scope(params, [NAMESPACE], RecallOptions(), generic=True)
    scope = Scope(scope.in_namespaces, scope.conditions, source, scope.one_namespace)
    vector = params.add(None, "vector")
    space = params.add(None, "int")
    ranking = nearest(scope, vector, space, str(K), "exact", "m.namespace, m.id", DIMENSIONS)
    return f"SELECT id FROM ({ranking}) AS best"  # $1 namespace, $2 vector, $3 space


_SCOPE = "m.namespace = $1::text AND $3::int IS NOT NULL"
LEGS = {
    "today": _exact("memories"),
    "content out of line": _exact("out_of_line"),
    "narrow table": f"""
        SELECT id FROM (SELECT id, m.embedding <#> $2::vector({DIMENSIONS}) AS distance
                        FROM narrow m WHERE {_SCOPE} AND m.space_id = $3::int
                          AND (m.expires_at IS NULL OR m.expires_at > now())
                          AND (m.valid_until IS NULL OR m.valid_until > now()) OFFSET 0) AS s
        ORDER BY distance, id LIMIT {K}""",
    "halfvec + exact re-rank": f"""
        WITH scored AS MATERIALIZED (
            SELECT id, m.embedding <#> $2::vector({DIMENSIONS})::halfvec AS distance
            FROM half m WHERE {_SCOPE}
        ), tenth AS (SELECT distance FROM scored ORDER BY distance OFFSET {K - 1} LIMIT 1),
        candidates AS MATERIALIZED (
            SELECT c.id FROM scored c, tenth WHERE c.distance <= tenth.distance + {HALF_MARGIN}
        )
        SELECT c.id FROM candidates c
        CROSS JOIN LATERAL (SELECT m.embedding FROM memories m
                            WHERE m.namespace = $1::text AND m.id = c.id OFFSET 0) AS m
        ORDER BY m.embedding <#> $2::vector, c.id LIMIT {K}""",
    "binary + re-rank": f"""
        SELECT c.id FROM (
            SELECT id FROM bits m WHERE {_SCOPE}
            ORDER BY m.embedding <~> binary_quantize($2::vector({DIMENSIONS}))::bit({DIMENSIONS})
            LIMIT {BIT_CANDIDATES}
        ) AS c JOIN memories m ON m.namespace = $1::text AND m.id = c.id
        ORDER BY m.embedding <#> $2::vector, c.id LIMIT {K}""",
    **{
        # The table holds one namespace: no condition on it, so the plan is the graph's.
        f"graph, ef_search {ef}": f"""
            SELECT id FROM narrow m WHERE $1::text IS NOT NULL AND $3::int IS NOT NULL
            ORDER BY m.embedding <#> $2::vector({DIMENSIONS}) LIMIT {K}"""
        for ef in EF_SEARCHES
    },
}


async def _buffers(connection: asyncpg.Connection, sql: str, args: Sequence[object]) -> int:
    plan = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    import json

    top = json.loads(plan)[0]["Plan"]
    return int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))


async def measure(dsn: str, queries: np.ndarray, rounds: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await register_vector_codec(connection)
        space = await connection.fetchval("SELECT id FROM embedding_spaces WHERE state = 'active'")
        statements = {name: await connection.prepare(sql) for name, sql in LEGS.items()}
        times: dict[str, list[float]] = {name: [] for name in LEGS}
        found: dict[str, list[list[object]]] = {name: [] for name in LEGS}
        vectors = [vector.tolist() for vector in queries]
        for round_ in range(rounds + 1):  # the first round warms up
            for vector in vectors:
                for name, statement in statements.items():
                    if name.startswith("graph"):
                        await connection.execute(f"SET hnsw.ef_search = {name.split()[-1]}")
                    started = time.perf_counter()
                    rows = await statement.fetch(NAMESPACE, vector, space)
                    if round_:
                        times[name].append(time.perf_counter() - started)
                    if round_ == 1:
                        found[name].append([row["id"] for row in rows])
        print(
            f"\n{'leg':<26}{'p50 ms':>8}{'p99 ms':>8}{'buffers':>9}{'exact top 10':>14}"
            f"{'p50 / today':>13}"
        )
        base = percentiles(times["today"])[0]
        args = (NAMESPACE, vectors[0], space)
        for name, sql in LEGS.items():
            p50, _, p99 = percentiles(times[name])
            same = np.mean([a == b for a, b in zip(found[name], found["today"], strict=True)])
            if name.startswith("graph"):
                await connection.execute(f"SET hnsw.ef_search = {name.split()[-1]}")
            buffers = await _buffers(connection, sql, args)
            print(f"{name:<26}{p50:>8.2f}{p99:>8.2f}{buffers:>9}{same:>14.2f}{p50 / base:>13.2f}")
    finally:
        await connection.close()


async def keyword(dsn: str, claims: list[str], rounds: int) -> None:
    """Keyword recall's statement over ``memories`` and over the out-of-line copy, alternated."""
    statements = {}
    connection = await asyncpg.connect(dsn)
    try:
        for source in ("memories", "out_of_line"):
            params = SqlParams()
            scope = recall_scope(params, [NAMESPACE], RecallOptions(), generic=True)
            scope = Scope(scope.in_namespaces, scope.conditions, source, scope.one_namespace)
            ctes = list(query_terms(params.add("", "text")))
            # The scan of every matching tsvector: what the rows' width changes (the postings
            # of large namespaces read no row; benchmarks/longdocs.py --plans measures them).
            ranking = keyword_ranking(params, scope, str(K), 0.9, 0.4, postings=False)
            ctes.extend(ranking.ctes)
            sql = "WITH " + ",\n".join(ctes) + f" SELECT id FROM ({ranking.select}) AS best"
            statements[source] = (await connection.prepare(sql), params.values)
        times: dict[str, list[float]] = {source: [] for source in statements}
        for round_ in range(rounds + 1):
            for claim in claims:
                for source, (statement, values) in statements.items():
                    started = time.perf_counter()
                    await statement.fetch(values[0], claim, *values[2:])
                    if round_:
                        times[source].append(time.perf_counter() - started)
        base = percentiles(times["memories"])[0]
        for source, latencies in times.items():
            p50, _, p99 = percentiles(latencies)
            print(f"keyword over {source:<13}{p50:>8.2f}{p99:>8.2f}{p50 / base:>13.2f}")
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=5183, help="documents")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    texts, vectors, claims, claim_vectors = _documents(arguments.size)
    print(f"{machine()}; load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    async with embedded_server() as server:
        dsn = await fresh_database(server, "exact_scan")
        await _load_namespace(dsn, texts, vectors)
        connection = await asyncpg.connect(dsn)
        try:
            await _levers(connection)
            pages = await connection.fetch(
                "SELECT relname, relpages FROM pg_class WHERE relname = ANY($1) ORDER BY 1",
                ["memories", "out_of_line", "narrow", "half", "bits"],
            )
        finally:
            await connection.close()
        print(
            f"{len(texts)} documents in one namespace, {arguments.queries} queries x "
            f"{arguments.rounds} rounds; heap pages: "
            + ", ".join(f"{row['relname']} {row['relpages']}" for row in pages)
        )
        await measure(dsn, claim_vectors[: arguments.queries], arguments.rounds)
        await keyword(dsn, claims[: arguments.queries], arguments.rounds)
        print(f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    OUT.mkdir(exist_ok=True)


if __name__ == "__main__":
    asyncio.run(main())
