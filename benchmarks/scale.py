"""How pgrecall grows: one table filled in steps up to 1M memories (384-d).

    python -m benchmarks.scale [--steps 10000,100000,1000000] [--queries 100]

At every step a tenth of the memories is in one namespace ("big") and the rest in namespaces
of 1,000, as agent memory tends to be; the step's new memories are written through
``remember``, then the graph of the large namespaces is rebuilt (``pgrecall index --rebuild``).
Printed per step: ingest rate, graph build time, table and index sizes, and vector / hybrid
recall p50 inside a small namespace and inside the big one (with recall@10 against exact).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import numpy as np

from benchmarks.common import (
    CONTENT_ONLY,
    OUT,
    Corpus,
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    remember_all,
    write_json,
)
from benchmarks.recall_latency import make_queries, recall_at_10, run_mode
from pgrecall import MemoryStore, load_settings

SIZES = """
    SELECT pg_relation_size('memories') AS heap,
           pg_indexes_size('memories') AS indexes,
           pg_relation_size('memories_embedding_hnsw') AS graph
"""


def step_corpus(total: int, before: int, seed: int) -> Corpus:
    """The memories that take the table from ``before`` to ``total`` rows."""
    big = (total - before) // 10
    small = (total - before - big) // 1000
    offset = before // 1000
    layout = [("big", big)] + [(f"small-{offset + i:05d}", 1000) for i in range(small)]
    return corpus(layout, seed=seed)


def _only(data: Corpus, namespace: str) -> Corpus:
    rows = [i for i, name in enumerate(data.namespaces) if name == namespace]
    return Corpus(
        [data.texts[i] for i in rows],
        [data.metadata[i] for i in rows],
        [data.namespaces[i] for i in rows],
        data.vectors[rows],
    )


def _merge(first: Corpus | None, second: Corpus) -> Corpus:
    if first is None:
        return second
    return Corpus(
        first.texts + second.texts,
        first.metadata + second.metadata,
        first.namespaces + second.namespaces,
        np.concatenate([first.vectors, second.vectors]),
    )


async def write(store: MemoryStore, data: Corpus) -> float:
    embedder = store.embedder
    assert isinstance(embedder, PrecomputedEmbedder)
    embedder.learn(data.texts, data.vectors)
    seconds = await remember_all(store, data)
    embedder.forget()
    return seconds


async def latency(store: MemoryStore, data: Corpus, scope: str, count: int) -> dict[str, Any]:
    queries = make_queries(data, scope, count)
    row: dict[str, Any] = {}
    for mode in ("vector", "hybrid"):
        latencies, found = await run_mode(store, queries, mode)
        row[mode] = percentiles(latencies)[0]
        if mode == "vector":
            row["recall_at_10"] = recall_at_10(found, queries.truth)[0]
    return row


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=100)
    arguments = parser.parse_args()
    steps = [int(step) for step in arguments.steps.split(",")]
    print(f"{machine()}; a tenth of each step in one namespace, the rest in namespaces of 1,000\n")
    header = (
        f"{'rows':>9}{'ingest/s':>10}{'graph s':>9}{'heap MB':>9}{'index MB':>10}{'graph MB':>10}"
        f"{'small vec':>11}{'small hyb':>11}{'big vec':>9}{'big hyb':>9}{'big R@10':>10}"
    )
    report: list[dict[str, Any]] = []
    async with embedded_server() as dsn:
        database = await fresh_database(dsn, "scale")
        settings = load_settings(
            database_url=database, worker=False, auto_migrate=False, **CONTENT_ONLY
        )
        store = await MemoryStore.open(settings, embedder=PrecomputedEmbedder())
        admin = await asyncpg.connect(database)
        try:
            print(header)
            before = 0
            big_so_far: Corpus | None = None
            for number, total in enumerate(steps):
                data = step_corpus(total, before, seed=100 + number)
                big_so_far = _merge(big_so_far, _only(data, "big"))
                seconds = await write(store, data)
                started = time.perf_counter()
                await store.index(rebuild=True)
                graph_seconds = time.perf_counter() - started
                sizes = await admin.fetchrow(SIZES)
                small_name = next(n for n in data.namespaces if n != "big")
                small = await latency(store, data, small_name, arguments.queries)
                big = await latency(store, big_so_far, "big", arguments.queries)
                row = {
                    "rows": total,
                    "ingest_per_second": len(data.texts) / seconds,
                    "graph_seconds": graph_seconds,
                    **{key: sizes[key] / 2**20 for key in ("heap", "indexes", "graph")},
                    "small": small,
                    "big": big,
                }
                report.append(row)
                print(
                    f"{total:>9}{row['ingest_per_second']:>10.0f}{graph_seconds:>9.1f}"
                    f"{row['heap']:>9.0f}{row['indexes']:>10.0f}{row['graph']:>10.0f}"
                    f"{small['vector']:>9.2f}ms{small['hybrid']:>9.2f}ms"
                    f"{big['vector']:>7.2f}ms{big['hybrid']:>7.1f}ms{big['recall_at_10']:>10.4f}",
                    flush=True,
                )
                before = total
        finally:
            await admin.close()
            await store.close()
    write_json(OUT / "scale.json", report)


if __name__ == "__main__":
    asyncio.run(main())
