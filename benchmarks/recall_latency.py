"""Recall latency and accuracy, query vector precomputed, against the peers on the same server.

    python -m benchmarks.recall_latency [--cases a,b,c] [--rows 100000] [--table 1000000]
                                        [--queries 200] [--uniform] [--skip-peers]

Cases (synthetic memories and vectors, see common.py):
  (a) one namespace holding all ``--rows`` memories;
  (b) 100 namespaces of ``--rows / 100``, recall inside one;
  (c) one namespace of ``--rows`` inside a table of ``--table`` spread over namespaces of 1,000.
Memories are written through ``remember``; large namespaces then enter the HNSW graph with
``MemoryStore.index(rebuild=True)`` (what ``pgrecall index --rebuild`` does after a bulk load).
Each query is a stored memory's vector plus noise of the same spread as the corpus (common.py),
its text four of that memory's words, inside that memory's namespace. Per mode: p50/p95/p99
through ``MemoryStore.recall`` (Python included); for vector mode recall@10 against the exact
top 10 (numpy over the scope) and whether the full k came back. Peers, fed the same vectors:
langchain-postgres PGVectorStore on (a), with the same HNSW index (m=16, ef_construction=64,
inner product, the same ef_search), and pgmemory ``search`` scoped to one user on (b).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from benchmarks.common import (
    CONTENT_ONLY,
    DIMENSIONS,
    OUT,
    SPREAD,
    Corpus,
    PrecomputedEmbedder,
    corpus,
    database_url,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    remember_all,
    timed,
    write_json,
)
from benchmarks.peers import run_peer, write_data
from pgrecall import MemoryStore, load_settings
from pgrecall.db.schema import indexed_embedding
from pgrecall.db.vectors import register_vector_codec

MODES = ("vector", "keyword", "hybrid")


@dataclass(frozen=True)
class Queries:
    texts: list[str]
    namespaces: list[str]
    vectors: np.ndarray
    truth: list[set[str]]  # exact top-10 contents per query


def make_queries(data: Corpus, scope: str | None, count: int, seed: int = 7) -> Queries:
    """``count`` queries near memories of namespace ``scope`` (any namespace when None)."""
    generator = np.random.default_rng(seed)
    names = np.array(data.namespaces)
    candidates = np.flatnonzero(names == scope) if scope else np.arange(len(names))
    picks = generator.choice(candidates, size=count, replace=False)
    noise = generator.standard_normal((count, data.vectors.shape[1]), dtype=np.float32)
    noisy = data.vectors[picks] + SPREAD / np.sqrt(data.vectors.shape[1]) * noise
    vectors = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    texts, namespaces, truth = [], [], []
    for row, pick in enumerate(picks):
        words = data.texts[pick].split()[:-1]
        texts.append(" ".join(generator.choice(words, size=4, replace=False)) + f" q{row}")
        namespace = data.namespaces[pick]
        namespaces.append(namespace)
        members = np.flatnonzero(names == namespace)
        scores = data.vectors[members] @ vectors[row]
        best = members[np.argsort(-scores)[:10]]
        truth.append({data.texts[i] for i in best})
    return Queries(texts, namespaces, vectors, truth)


async def load(dsn: str, data: Corpus) -> MemoryStore:
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts, data.vectors)
    settings = load_settings(database_url=dsn, worker=False, auto_migrate=False, **CONTENT_ONLY)
    store = await MemoryStore.open(settings, embedder=embedder)
    loaded = await remember_all(store, data)
    started = time.perf_counter()
    await store.index(rebuild=True)
    count = len(data.texts)
    print(
        f"  loaded {count} memories in {loaded:.1f} s ({count / loaded:.0f}/s), "
        f"HNSW graph of the large namespaces built in {time.perf_counter() - started:.1f} s"
    )
    return store


def recall_at_10(found: list[list[str]], truth: list[set[str]]) -> tuple[float, float]:
    """Mean overlap with the exact top 10, and the share of queries that got all 10."""
    overlap = [len(set(hits) & best) / 10 for hits, best in zip(found, truth, strict=True)]
    full = [len(hits) == 10 for hits in found]
    return float(np.mean(overlap)), float(np.mean(full))


async def run_mode(
    store: MemoryStore, queries: Queries, mode: str
) -> tuple[list[float], list[list[str]]]:
    """Latency of every query in ``mode`` (after a warm-up) and the contents each returned."""
    embedder = store.embedder
    assert isinstance(embedder, PrecomputedEmbedder)
    embedder.learn(queries.texts, queries.vectors)
    found: list[list[str]] = []

    def call(i: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            result = await store.recall(
                queries.texts[i],
                namespace=queries.namespaces[i],
                mode=mode,  # type: ignore[arg-type]
            )
            found.append([hit.content for hit in result])

        return run

    latencies = await timed([call(i) for i in range(len(queries.texts))])
    return latencies, found[-len(queries.texts) :]  # the warm-up's answers come first


async def measure(store: MemoryStore, queries: Queries, label: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode in MODES:
        latencies, found = await run_mode(store, queries, mode)
        p50, p95, p99 = percentiles(latencies)
        row: dict[str, Any] = {"p50": p50, "p95": p95, "p99": p99}
        line = f"  {label:<34}{mode:<9}p50 {p50:6.2f} ms  p95 {p95:6.2f}  p99 {p99:6.2f}"
        if mode == "vector":
            accuracy, full = recall_at_10(found, queries.truth)
            row.update(recall_at_10=accuracy, full_k=full)
            line += f"  recall@10 {accuracy:.4f}  full k {full:.0%}"
        print(line)
        results[mode] = row
    ratio = results["hybrid"]["p50"] / results["vector"]["p50"]
    print(f"  {label:<34}hybrid / vector p50: {ratio:.2f}x")
    return results


async def run_case(dsn: str, database: str, data: Corpus, queries: Queries) -> dict[str, Any]:
    """Load ``data`` into a fresh ``database`` and measure every mode on ``queries``."""
    store = await load(await fresh_database(dsn, database), data)
    try:
        return await measure(store, queries, "pgrecall")
    finally:
        await store.close()


# What any client pays on (a) for the graph walk and one round trip: no scope, expiry,
# freshness (rows not in the graph yet), hit columns or result objects. The graph is built on
# the vectors cast to their size (migration 0012), so the floor orders by that expression.
BARE_HNSW = (
    "SELECT id, content, metadata FROM memories WHERE hnsw_indexed "
    f"ORDER BY {indexed_embedding(DIMENSIONS)} <#> $1 LIMIT 10"
)


async def bare_hnsw(dsn: str, queries: Queries, label: str) -> dict[str, Any]:
    """p50/p95/p99 of ``BARE_HNSW`` prepared once on one asyncpg connection: the floor of (a)."""
    ef_search = str(load_settings().hnsw_ef_search)
    connection = await asyncpg.connect(dsn, server_settings={"hnsw.ef_search": ef_search})
    try:
        await register_vector_codec(connection)
        statement = await connection.prepare(BARE_HNSW)

        def call(vector: list[float]) -> Callable[[], Awaitable[object]]:
            return lambda: statement.fetch(vector)

        latencies = await timed([call(vector.tolist()) for vector in queries.vectors])
    finally:
        await connection.close()
    p50, p95, p99 = percentiles(latencies)
    print(f"  {label:<34}{'vector':<9}p50 {p50:6.2f} ms  p95 {p95:6.2f}  p99 {p99:6.2f}")
    return {"p50": p50, "p95": p95, "p99": p99}


async def peer(name: str, dsn: str, data: Corpus, queries: Queries, label: str) -> dict[str, Any]:
    directory = write_data(
        OUT / f"recall-{name}",
        data.texts,
        data.metadata,
        data.namespaces,
        data.vectors,
        queries.texts,
        queries.namespaces,
        queries.vectors,
    )
    database = await fresh_database(dsn, f"recall_{name}", migrated=False)
    ef_search = load_settings().hnsw_ef_search
    result = await run_peer(
        name, database, directory, ef_search=ef_search, search=True, load="copy"
    )
    p50, p95, p99 = percentiles(result["latencies"])
    accuracy, full = recall_at_10(result["hits"], queries.truth)
    print(
        f"  {label:<34}{'vector':<9}p50 {p50:6.2f} ms  p95 {p95:6.2f}  p99 {p99:6.2f}"
        f"  recall@10 {accuracy:.4f}  full k {full:.0%}"
    )
    return {"p50": p50, "p95": p95, "p99": p99, "recall_at_10": accuracy, "full_k": full}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="a,b,c")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--table", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--uniform", action="store_true", help="uniform random vectors")
    parser.add_argument("--skip-peers", action="store_true")
    arguments = parser.parse_args()
    cases = set(arguments.cases.split(","))
    rows = arguments.rows
    report: dict[str, Any] = {"machine": machine(), "rows": rows}
    print(f"{machine()}; k=10, {arguments.queries} queries per mode\n")
    async with embedded_server() as dsn:
        if "a" in cases:
            print(f"(a) one namespace of {rows}")
            data = corpus([("everything", rows)], uniform=arguments.uniform)
            queries = make_queries(data, None, arguments.queries)
            report["a"] = await run_case(dsn, "recall_a", data, queries)
            report["a_bare"] = await bare_hnsw(
                database_url(dsn, "recall_a"), queries, "bare HNSW query (the floor)"
            )
            if not arguments.skip_peers:
                report["a_langchain"] = await peer(
                    "langchain", dsn, data, queries, "langchain-postgres (same HNSW)"
                )
        if "b" in cases:
            namespaces = 100
            print(f"\n(b) {namespaces} namespaces of {rows // namespaces}, recall inside one")
            layout = [(f"agent-{i:03d}", rows // namespaces) for i in range(namespaces)]
            data = corpus(layout, uniform=arguments.uniform)
            queries = make_queries(data, None, arguments.queries)
            report["b"] = await run_case(dsn, "recall_b", data, queries)
            if not arguments.skip_peers:
                report["b_pgmemory"] = await peer(
                    "pgmemory", dsn, data, queries, "pgmemory search (one user)"
                )
        if "c" in cases:
            small = (arguments.table - rows) // 1000
            print(f"\n(c) one namespace of {rows} inside a table of {rows + small * 1000}")
            layout = [("big", rows)] + [(f"small-{i:05d}", 1000) for i in range(small)]
            data = corpus(layout, uniform=arguments.uniform)
            queries = make_queries(data, "big", arguments.queries)
            report["c"] = await run_case(dsn, "recall_c", data, queries)
    write_json(OUT / "recall_latency.json", report)


if __name__ == "__main__":
    asyncio.run(main())
