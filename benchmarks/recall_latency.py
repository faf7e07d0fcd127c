"""Recall latency per mode on the 100-namespaces-of-1,000 case (and one namespace of all).

    python -m benchmarks.recall_latency [--namespaces 100] [--per-namespace 1000] [--queries 200]

Synthetic memories: 12-word sentences drawn from a Zipf-distributed 20,000-word vocabulary
whose 100 most frequent words are left out (as stop words are from real text), each
with a fixed random unit 384-d vector (precomputed, so the figures are the database's alone).
They are written through MemoryStore.remember; the HNSW index is built after loading (with
``maintenance_work_mem`` raised), as one would for a bulk import. For each case it prints p50 /
p95 / p99 of vector, keyword and hybrid recall through MemoryStore, recall@10 of the default
plan against ``exact=True``, and the hybrid / vector p50 ratio (target: at most 2).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import numpy as np

from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.db import migrate
from pgrecall.db.embedded import EmbeddedPostgres
from pgrecall.embedding.base import BatchingEmbedder, BatchOutput
from pgrecall.embedding.space import EmbeddingSpace

DIMENSIONS = 384
VOCABULARY = 20_000
STOP_WORDS = 100
WORDS_PER_MEMORY = 12


class PrecomputedEmbedder(BatchingEmbedder):
    """Vectors from a seeded generator per text: no model time in the figures."""

    def __init__(self) -> None:
        super().__init__(
            EmbeddingSpace("bench", "precomputed", DIMENSIONS, "", ""),
            batch_size=10_000,
            batch_chars=10**9,
            concurrency=1,
        )

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        return BatchOutput(vectors=[vector_for(text).tolist() for text in texts])


def vector_for(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    vector = np.random.default_rng(seed).standard_normal(DIMENSIONS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def sentences(count: int, generator: np.random.Generator) -> list[str]:
    ranks = STOP_WORDS + generator.zipf(1.1, size=(count, WORDS_PER_MEMORY)) % VOCABULARY
    return [" ".join(f"w{rank}" for rank in row) + f" n{i}" for i, row in enumerate(ranks)]


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return pick(0.5), pick(0.95), pick(0.99)


async def load(store: MemoryStore, namespaces: list[str], per_namespace: int) -> float:
    generator = np.random.default_rng(1)
    started = time.perf_counter()
    for name in namespaces:
        texts = sentences(per_namespace, generator)
        await store.remember([MemoryInput(text) for text in texts], namespace=name)
    return time.perf_counter() - started


async def measure(
    store: MemoryStore, namespaces: list[str], queries: int, label: str
) -> dict[str, float]:
    generator = np.random.default_rng(2)
    questions = [" ".join(s.split()[:4]) for s in sentences(queries, generator)]
    targets = [namespaces[i % len(namespaces)] for i in range(queries)]
    results: dict[str, float] = {}
    for mode in ("vector", "keyword", "hybrid"):
        for question, target in zip(questions[:10], targets[:10], strict=True):  # warm up
            await store.recall(question, namespace=target, mode=mode)
        latencies = []
        for question, target in zip(questions, targets, strict=True):
            started = time.perf_counter()
            await store.recall(question, namespace=target, mode=mode)
            latencies.append(time.perf_counter() - started)
        p50, p95, p99 = percentiles(latencies)
        results[mode] = p50
        print(f"  {label:<28}{mode:<9} p50 {p50:6.2f} ms  p95 {p95:6.2f}  p99 {p99:6.2f}")
    overlap = []
    for question, target in zip(questions[:50], targets[:50], strict=True):
        plan = await store.recall(question, namespace=target, mode="vector")
        exact = await store.recall(question, namespace=target, mode="vector", exact=True)
        overlap.append(len({h.id for h in plan} & {h.id for h in exact}) / max(len(exact), 1))
    recall_at_10 = sum(overlap) / len(overlap)
    print(f"  {label:<28}recall@10 of the default vector plan vs exact: {recall_at_10:.4f}")
    print(f"  {label:<28}hybrid / vector p50: {results['hybrid'] / results['vector']:.2f}x")
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--per-namespace", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    arguments = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="pgrecall-bench-"))
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    try:
        await migrate.upgrade(dsn, DIMENSIONS)
        settings = load_settings(database_url=dsn, worker=False, ingest_chunk_size=2000)
        admin = await asyncpg.connect(dsn)
        await admin.execute("DROP INDEX memories_embedding_hnsw")  # bulk load, then index
        store = await MemoryStore.open(settings, embedder=PrecomputedEmbedder())
        try:
            names = [f"agent-{i:03d}" for i in range(arguments.namespaces)]
            seconds = await load(store, names, arguments.per_namespace)
            rows = arguments.namespaces * arguments.per_namespace
            print(
                f"loaded {rows} memories through remember() in {seconds:.1f} s "
                f"({rows / seconds:.0f}/s, HNSW index dropped during the load)"
            )
            started = time.perf_counter()
            await admin.execute("SET maintenance_work_mem = '1GB'")
            await admin.execute("SET max_parallel_maintenance_workers = 2")
            await admin.execute(
                "CREATE INDEX memories_embedding_hnsw ON memories USING hnsw "
                "(embedding vector_ip_ops) WITH (m = 16, ef_construction = 64)"
            )
            await admin.execute("ANALYZE memories")
            await admin.close()
            print(f"HNSW build: {time.perf_counter() - started:.1f} s")
            print(
                f"\n{arguments.namespaces} namespaces of {arguments.per_namespace}, "
                f"recall inside one ({arguments.queries} queries, k=10):"
            )
            await measure(store, names, arguments.queries, "one of many namespaces")
        finally:
            await store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
