"""pgrecall on a Citus cluster against plain PostgreSQL, in one run.

For one namespace of each size (``--sizes``, default 1,000 and 100,000) on each engine: the
ingest rate through ``remember`` (precomputed vectors, so the figures are the database's), the
recall p50 of each mode, and the shard tasks Citus plans for each statement of a recall
(``EXPLAIN``: ``Task Count``; plain PostgreSQL plans none). Citus is a coordinator and two
workers started from ../shared/citus (tests/citus_cluster.py, the suite's recipe); every node
shares this machine's cores, so read the ratios, not the times.

    python -m benchmarks.citus [--sizes 1000,100000] [--queries 100]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import numpy as np
from tests.citus_cluster import CitusCluster, absent_reason

from benchmarks.common import (
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    remember_all,
    timed,
)
from pgrecall import MemoryStore, load_settings
from pgrecall.db import migrate
from pgrecall.db.vectors import register_vector_codec

DIMENSIONS = 384
MODES = ("vector", "keyword", "hybrid")
_TASK_COUNT = re.compile(r"Task Count: (\d+)")


async def _open(dsn: str, embedder: PrecomputedEmbedder, sent: list[Any]) -> MemoryStore:
    """A store on a one-connection pool whose statements are kept in ``sent``."""
    settings = load_settings(worker=False, auto_migrate=False)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=1,
        init=register_vector_codec,
        server_settings={
            "hnsw.ef_search": str(settings.hnsw_ef_search),
            "hnsw.iterative_scan": "relaxed_order",
        },
    )
    async with pool.acquire() as connection:
        connection.add_query_logger(sent.append)
    resources = AsyncExitStack()
    resources.push_async_callback(pool.close)
    return MemoryStore(settings, pool, dsn, embedder, resources)


async def _tasks(dsn: str, sent: list[Any]) -> str:
    """Task counts Citus plans for each statement touching memories ("-": none planned)."""
    connection = await asyncpg.connect(dsn)
    try:
        await register_vector_codec(connection)
        counts = []
        for record in sent:
            if "memories" not in record.query:
                continue
            plan = await connection.fetch(f"EXPLAIN (COSTS OFF) {record.query}", *record.args)
            found = _TASK_COUNT.findall("\n".join(row[0] for row in plan))
            counts.append("+".join(found) or "-")
        return ",".join(counts)
    finally:
        await connection.close()


async def measure(dsn: str, size: int, queries: int) -> dict[str, Any]:
    data = corpus([("large", size), ("decoy", 200)], uniform=True)
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts, data.vectors)
    sent: list[Any] = []
    store = await _open(dsn, embedder, sent)
    try:
        seconds = await remember_all(store, data)
        await store.index(rebuild=True)
        rng = np.random.default_rng(3)
        picks = rng.choice(np.flatnonzero(np.array(data.namespaces) == "large"), queries)
        texts = [data.texts[i] for i in picks]  # learned: each query has its vector
        result: dict[str, Any] = {"ingest_per_s": len(data.texts) / seconds}
        for mode in MODES:
            calls = [
                lambda text=text, mode=mode: store.recall(text, namespace="large", mode=mode)
                for text in texts
            ]
            result[mode] = percentiles(await timed(calls))[0]
            sent.clear()
            store._sizes.forget(["large"])  # the size count is part of a first recall
            await store.recall(texts[0], namespace="large", mode=mode)
            result[f"{mode}_tasks"] = await _tasks(dsn, sent)
        return result
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    reason = absent_reason()
    if reason:
        raise SystemExit(reason)
    print(machine())
    cluster = CitusCluster()
    await asyncio.to_thread(cluster.start)
    try:
        await cluster.tune_for_tests()
        async with embedded_server() as server:
            for size in sizes:
                print(f"\none namespace of {size} (and one of 200 beside it)")
                figures = {}
                plain = await fresh_database(server, f"bench_citus_{size}")
                figures["postgres"] = await measure(plain, size, args.queries)
                citus = await cluster.create_database(f"bench_citus_{size}")
                await migrate.upgrade(citus, DIMENSIONS)
                figures["citus"] = await measure(citus, size, args.queries)
                for engine, row in figures.items():
                    print(
                        f"  {engine:9} ingest {row['ingest_per_s']:7.0f}/s  "
                        + "  ".join(f"{m} p50 {row[m]:6.2f} ms" for m in MODES)
                        + "  tasks "
                        + "  ".join(f"{m} {row[m + '_tasks']}" for m in MODES)
                    )
                ratio = {k: figures["citus"][k] / figures["postgres"][k] for k in MODES}
                ingest = figures["citus"]["ingest_per_s"] / figures["postgres"]["ingest_per_s"]
                print(
                    f"  citus / postgres: ingest {ingest:.2f}x  "
                    + "  ".join(f"{m} p50 {ratio[m]:.2f}x" for m in MODES)
                )
    finally:
        started = time.perf_counter()
        await asyncio.to_thread(cluster.stop)
        print(f"\ncluster stopped in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
