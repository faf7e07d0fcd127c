"""Runs a peer library (langchain-postgres, pgmemory) inside its own virtualenv.

Started by ``benchmarks.peers`` with the peers' interpreter; imports nothing from pgrecall. Reads
a job (JSON) whose data directory holds ``texts.json``, ``metadata.json``, ``namespaces.json``,
``vectors.npy`` and, for searches, ``queries.json`` / ``query_vectors.npy``; prints one JSON
line with the results. Every peer is fed the precomputed vectors through a fake embedder.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np


class Lookup:
    """Text -> precomputed vector, for the peers' embedder interfaces."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.vectors = {text: vectors[i].tolist() for i, text in enumerate(texts)}

    def __call__(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[text] for text in texts]


async def copy_rows(
    dsn: str, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Bulk-load a peer's own table (its ingest rate is measured by benchmarks.ingest): binary
    COPY with its HNSW index dropped and built again after, as one would for a bulk load."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    connection = await asyncpg.connect(dsn)
    try:
        await register_vector(connection)
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 "
            "AND indexdef LIKE '%USING hnsw%'",
            table,
        )
        for index in indexes:
            await connection.execute(f'DROP INDEX "{index["indexname"]}"')
        await connection.copy_records_to_table(table, records=rows, columns=columns)
        await connection.execute("SET maintenance_work_mem = '1GB'")
        for index in indexes:
            await connection.execute(index["indexdef"])
        await connection.execute(f'ANALYZE "{table}"')
    finally:
        await connection.close()


def _load(data: Path, prefix: str = "") -> tuple[list[str], np.ndarray]:
    texts = json.loads((data / f"{prefix}texts.json").read_text())
    return texts, np.load(data / f"{prefix}vectors.npy")


async def langchain(job: dict[str, Any]) -> dict[str, Any]:
    from langchain_core.embeddings import Embeddings
    from langchain_postgres import PGEngine, PGVectorStore
    from langchain_postgres.v2.indexes import DistanceStrategy, HNSWIndex, HNSWQueryOptions

    data = Path(job["data"])
    texts, vectors = _load(data)
    query_texts, query_vectors = _load(data, "query_")
    lookup = Lookup(texts + query_texts, np.concatenate([vectors, query_vectors]))

    class Precomputed(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return lookup(texts)

        def embed_query(self, text: str) -> list[float]:
            return lookup([text])[0]

    engine = PGEngine.from_connection_string(job["url"])
    table = "langchain_bench"
    await engine.ainit_vectorstore_table(
        table, vector_size=vectors.shape[1], overwrite_existing=True
    )
    store = await PGVectorStore.create(
        engine,
        embedding_service=Precomputed(),
        table_name=table,
        distance_strategy=DistanceStrategy.INNER_PRODUCT,
        index_query_options=HNSWQueryOptions(ef_search=job.get("ef_search", 40)),
    )
    result: dict[str, Any] = {}
    metadata = json.loads((data / "metadata.json").read_text())
    if job.get("load") == "copy":
        rows = [
            (uuid.uuid4(), text, vectors[i], json.dumps(metadata[i]))
            for i, text in enumerate(texts)
        ]
        columns = ("langchain_id", "content", "embedding", "langchain_metadata")
        await copy_rows(job["dsn"], table, columns, rows)
    else:
        started = time.perf_counter()
        for start in range(0, len(texts), 1000):
            end = start + 1000
            await store.aadd_embeddings(
                texts[start:end], vectors[start:end].tolist(), metadata[start:end]
            )
        result["ingest_seconds"] = time.perf_counter() - started
    result["rows"] = len(texts)
    if job.get("search"):
        started = time.perf_counter()
        await store.aapply_vector_index(
            HNSWIndex(m=16, ef_construction=64, distance_strategy=DistanceStrategy.INNER_PRODUCT)
        )
        result["index_seconds"] = time.perf_counter() - started
        latencies, ids = [], []
        for query in query_vectors[:10]:  # warm up
            await store.asimilarity_search_by_vector(query.tolist(), k=10)
        for query in query_vectors:
            started = time.perf_counter()
            documents = await store.asimilarity_search_by_vector(query.tolist(), k=10)
            latencies.append(time.perf_counter() - started)
            ids.append([document.page_content for document in documents])
        result["latencies"] = latencies
        result["hits"] = ids
    await engine.close()
    return result


async def pgmemory(job: dict[str, Any]) -> dict[str, Any]:
    from pgmemory import MemoryStore
    from pgmemory.embeddings import EmbeddingProvider
    from pgmemory.types import Memory, SearchQuery

    data = Path(job["data"])
    texts, vectors = _load(data)
    namespaces = json.loads((data / "namespaces.json").read_text())
    metadata = json.loads((data / "metadata.json").read_text())
    query_texts, query_vectors = _load(data, "query_")
    lookup = Lookup(texts + query_texts, np.concatenate([vectors, query_vectors]))

    class Precomputed(EmbeddingProvider):
        async def embed(self, texts: Any) -> list[list[float]]:
            return lookup(list(texts))

        @property
        def dimensions(self) -> int:
            return int(vectors.shape[1])

    store = MemoryStore(
        job["url"], Precomputed(), table_name="pgmemory_bench", enrich_embeddings=False
    )
    await store.init()
    result: dict[str, Any] = {}
    if job.get("load") == "copy":
        rows = [
            ("bench", namespaces[i], text, vectors[i], json.dumps(metadata[i]))
            for i, text in enumerate(texts)
        ]
        columns = ("app_name", "user_id", "content", "content_embedding", "metadata")
        await copy_rows(job["dsn"], "pgmemory_bench", columns, rows)
    else:
        started = time.perf_counter()
        for start in range(0, len(texts), 1000):
            batch = [
                Memory(app_name="bench", user_id=namespaces[i], text=texts[i], metadata=metadata[i])
                for i in range(start, min(start + 1000, len(texts)))
            ]
            await store.add_many(batch)
        result["ingest_seconds"] = time.perf_counter() - started
    result["rows"] = len(texts)
    if job.get("search"):
        users = json.loads((data / "query_namespaces.json").read_text())
        latencies, ids = [], []
        queries = [
            SearchQuery(
                app_name="bench",
                user_id=user,
                text=text,
                top_k=10,
                weight_keyword=0.0,
                weight_recency=0.0,
                weight_similarity=1.0,
                similarity_threshold=-10.0,
            )
            for user, text in zip(users, query_texts, strict=True)
        ]
        for query in queries[:10]:  # warm up
            await store.search(query)
        for query in queries:
            started = time.perf_counter()
            found = await store.search(query)
            latencies.append(time.perf_counter() - started)
            ids.append([hit.memory.text for hit in found])
        result["latencies"] = latencies
        result["hits"] = ids
    await store.close()
    return result


def main() -> None:
    job = json.loads(sys.argv[1])
    runner = {"langchain": langchain, "pgmemory": pgmemory}[job["peer"]]
    print(json.dumps(asyncio.run(runner(job))))


if __name__ == "__main__":
    main()
