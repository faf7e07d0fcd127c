"""The graph's recall@10 and latency at several ``ef_search``: what the default costs.

    python -m benchmarks.graph_recall [--rows 100000] [--queries 200] [--ef 40,64,100,200,400]
                                      [--centres N] [--threshold ROWS]

Case (a) of ``benchmarks.recall_latency``: one namespace of ``--rows`` synthetic memories (above
the exact-scan threshold, so through the graph), written through ``remember`` and indexed with
``MemoryStore.index(rebuild=True)``; then, on that one database, a store per ``ef_search``
value (the pool's setting, ``PGRECALL_HNSW_EF_SEARCH``), alternated round by round, vector
recall p50/p99 and recall@10 against the exact top 10. ``--centres N`` builds the corpus on the
first N titles' vectors instead of ``common.CENTRE_TITLES`` (their cache must exist).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from benchmarks import common
from benchmarks.common import (
    CONTENT_ONLY,
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
)
from benchmarks.recall_latency import load, make_queries, recall_at_10, run_mode
from pgrecall import MemoryStore, load_settings


def _load_average() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in os.getloadavg())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="40,64,100,200,400", help="ef_search values")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--centres", type=int, default=common.CENTRE_TITLES)
    parser.add_argument(
        "--threshold", type=int, default=None, help="PGRECALL_EXACT_SCAN_MAX_ROWS (tiny runs)"
    )
    arguments = parser.parse_args()
    if arguments.threshold is not None:  # read by every store's settings, the indexer's too
        os.environ["PGRECALL_EXACT_SCAN_MAX_ROWS"] = str(arguments.threshold)
    common.CENTRE_TITLES = arguments.centres
    efs = [int(value) for value in arguments.ef.split(",")]
    print(f"{machine()}; {_load_average()}; centres from {common.CENTRE_TITLES} titles")
    data = corpus([("everything", arguments.rows)])
    queries = make_queries(data, None, arguments.queries)
    async with embedded_server() as server:
        dsn = await fresh_database(server, "graph_recall")
        await (await load(dsn, data)).close()
        stores: dict[int, MemoryStore] = {}
        try:
            for ef in efs:
                embedder = PrecomputedEmbedder()
                embedder.learn(data.texts[:1], data.vectors[:1])
                settings = load_settings(
                    database_url=dsn,
                    worker=False,
                    auto_migrate=False,
                    hnsw_ef_search=ef,
                    **CONTENT_ONLY,
                )
                stores[ef] = await MemoryStore.open(settings, embedder=embedder)
            latencies: dict[int, list[float]] = {ef: [] for ef in efs}
            accuracy: dict[int, float] = {}
            for _ in range(arguments.rounds):
                for ef, store in stores.items():
                    timed, found = await run_mode(store, queries, "vector")
                    latencies[ef].extend(timed)
                    accuracy[ef] = recall_at_10(found, queries.truth)[0]
        finally:
            for store in stores.values():
                await store.close()
    print(f"{'ef_search':>9}{'p50 ms':>8}{'p99 ms':>8}{'recall@10':>11}")
    for ef in efs:
        p50, _, p99 = percentiles(latencies[ef])
        print(f"{ef:>9}{p50:>8.2f}{p99:>8.2f}{accuracy[ef]:>11.4f}")
    print(_load_average())


if __name__ == "__main__":
    asyncio.run(main())
