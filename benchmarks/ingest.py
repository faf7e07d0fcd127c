"""Ingest rate: pgrecall's path against the physical limit and against the peers, one server.

    python -m benchmarks.ingest [--rows 100000] [--namespaces 100] [--rounds 3] [--peer-rows 100000]
                                [--model-rows 3000] [--skip-peers]

Every system gets the same synthetic memories (12-word texts, dialogue metadata, precomputed
384-d vectors), into its own fresh database on one embedded PostgreSQL:

- raw COPY: asyncpg's binary ``copy_records_to_table`` into pgrecall's ``memories`` table, rows
  (hashes included) built before the clock starts: what the table itself can take.
- pgrecall: ``MemoryStore.remember`` in calls of one namespace's 1,000 memories, with an
  embedder that returns the precomputed vectors; then the same memories again (all known, so
  nothing is written), and one memory per call.
- langchain-postgres ``PGVectorStore.aadd_embeddings`` and pgmemory ``add_many`` (from PyPI, in
  their own virtualenv), fed the same vectors, batches of 1,000.

Then end to end with the local model: ``remember`` on short real sentences (SciFact titles)
against the model alone embedding the same texts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import time
from typing import Any

import asyncpg
from pgvector.asyncpg import register_vector

from benchmarks.common import (
    CONTENT_ONLY,
    OUT,
    Corpus,
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    remember_all,
    settle,
    titles,
    write_json,
)
from benchmarks.peers import run_peer, write_data
from pgrecall import MemoryStore, load_settings
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.embedding.space import configured_space

COPY_COLUMNS = (
    "namespace",
    "content",
    "content_hash",
    "metadata",
    "embedding",
    "space_id",
    "status",
)


async def raw_copy(dsn: str, data: Corpus) -> float:
    connection = await asyncpg.connect(dsn)
    try:
        await register_vector(connection)
        space_id = await connection.fetchval(
            "INSERT INTO embedding_spaces (kind, model, dimensions, document_prefix, "
            "query_prefix, embedder_version) VALUES ('copy', 'precomputed', $1, '', '', '') "
            "RETURNING id",
            data.vectors.shape[1],
        )
        records = [
            (
                data.namespaces[i],
                text,
                hashlib.sha256(text.encode()).digest(),
                json.dumps(data.metadata[i]),
                data.vectors[i],
                space_id,
                "embedded",
            )
            for i, text in enumerate(data.texts)
        ]
        started = time.perf_counter()
        await connection.copy_records_to_table("memories", records=records, columns=COPY_COLUMNS)
        return time.perf_counter() - started
    finally:
        await connection.close()


def _store_settings(dsn: str) -> Any:
    return load_settings(database_url=dsn, worker=False, auto_migrate=False, **CONTENT_ONLY)


async def through_remember(dsn: str, data: Corpus) -> float:
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts, data.vectors)
    store = await MemoryStore.open(_store_settings(dsn), embedder=embedder)
    try:
        return await remember_all(store, data)
    finally:
        await store.close()


async def one_at_a_time(dsn: str, data: Corpus, count: int) -> float:
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts[:count], data.vectors[:count])
    store = await MemoryStore.open(_store_settings(dsn), embedder=embedder)
    try:
        started = time.perf_counter()
        for i in range(count):
            await store.remember(
                data.texts[i], namespace=data.namespaces[i], metadata=data.metadata[i]
            )
        return time.perf_counter() - started
    finally:
        await store.close()


async def end_to_end(dsn: str, count: int) -> tuple[float, float, int]:
    texts = titles(count)
    embedder = LocalEmbedder(configured_space(load_settings(embedder="local")))
    try:
        await embedder.embed_documents(texts[:64])  # load the model, warm up
        started = time.perf_counter()
        for start in range(0, len(texts), 1000):
            await embedder.embed_documents(texts[start : start + 1000])
        model_seconds = time.perf_counter() - started
        store = await MemoryStore.open(_store_settings(dsn), embedder=embedder)
        try:
            started = time.perf_counter()
            for start in range(0, len(texts), 1000):
                await store.remember(texts[start : start + 1000], namespace="e2e")
            store_seconds = time.perf_counter() - started
        finally:
            await store.close()
    finally:
        await embedder.aclose()
    return model_seconds, store_seconds, len(texts)


def _row(name: str, rows: int, seconds: float, copy_rate: float, pgrecall_rate: float) -> str:
    rate = rows / seconds
    return (
        f"{name:<44}{rows:>8}{seconds:>9.1f}{rate:>10.0f}{rate / copy_rate:>10.3f}"
        f"{pgrecall_rate / rate:>12.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--peer-rows", type=int, default=100_000)
    parser.add_argument("--single-rows", type=int, default=2000)
    parser.add_argument("--model-rows", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="COPY and remember runs each")
    parser.add_argument("--skip-peers", action="store_true")
    arguments = parser.parse_args()
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    per_namespace = arguments.rows // arguments.namespaces
    data = corpus([(f"agent-{i:03d}", per_namespace) for i in range(arguments.namespaces)])
    rows = len(data.texts)
    results: dict[str, Any] = {"machine": machine(), "rows": rows}
    print(f"{machine()}; {rows} memories in {arguments.namespaces} namespaces, 384-d\n")
    async with embedded_server() as dsn:
        # The VM's speed drifts between runs: COPY and remember alternate, the medians compare.
        copy_runs, pgrecall_runs = [], []
        for _ in range(arguments.rounds):
            copy_runs.append(await raw_copy(await fresh_database(dsn, "ingest_copy"), data))
            filled = await fresh_database(dsn, "ingest_pgrecall")
            pgrecall_runs.append(await through_remember(filled, data))
        await settle(dsn)
        # The same memories into the database just filled: all known, as a re-run import or an
        # agent repeating itself.
        again_seconds = await through_remember(filled, data)
        copy_seconds = statistics.median(copy_runs)
        pgrecall_seconds = statistics.median(pgrecall_runs)
        copy_rate = rows / copy_seconds
        pgrecall_rate = rows / pgrecall_seconds
        single = min(arguments.single_rows, rows)
        single_seconds = await one_at_a_time(
            await fresh_database(dsn, "ingest_single"), data, single
        )
        results.update(
            copy_seconds=copy_seconds,
            pgrecall_seconds=pgrecall_seconds,
            copy_runs=copy_runs,
            pgrecall_runs=pgrecall_runs,
            single_rows=single,
            single_seconds=single_seconds,
            again_seconds=again_seconds,
        )
        peers: dict[str, dict[str, Any]] = {}
        if not arguments.skip_peers:
            count = min(arguments.peer_rows, rows)
            directory = write_data(
                OUT / "ingest-data",
                data.texts[:count],
                data.metadata[:count],
                data.namespaces[:count],
                data.vectors[:count],
            )
            for peer in ("langchain", "pgmemory"):
                database = await fresh_database(dsn, f"ingest_{peer}", migrated=False)
                peers[peer] = await run_peer(peer, database, directory)
        results["peers"] = peers
        print(
            f"{'system':<44}{'rows':>8}{'seconds':>9}{'rows/s':>10}{'x COPY':>10}{'pgrecall/x':>12}"
        )
        print(
            _row(
                "raw asyncpg binary COPY (the limit)", rows, copy_seconds, copy_rate, pgrecall_rate
            )
        )
        print(
            _row(
                "pgrecall remember, 1,000 per call",
                rows,
                pgrecall_seconds,
                copy_rate,
                pgrecall_rate,
            )
        )
        print(
            _row("pgrecall remember, 1 per call", single, single_seconds, copy_rate, pgrecall_rate)
        )
        print(
            _row(
                "pgrecall remember, all known again", rows, again_seconds, copy_rate, pgrecall_rate
            )
        )
        ratios = ", ".join(f"{c / p:.2f}" for c, p in zip(copy_runs, pgrecall_runs, strict=True))
        print(f"{'  (median of each; remember/COPY by round: ' + ratios + ')':<44}")
        names = {"langchain": "langchain-postgres aadd_embeddings", "pgmemory": "pgmemory add_many"}
        for peer, result in peers.items():
            print(
                _row(
                    names[peer], result["rows"], result["ingest_seconds"], copy_rate, pgrecall_rate
                )
            )
        if arguments.model_rows:
            database = await fresh_database(dsn, "ingest_e2e")
            model_seconds, store_seconds, count = await end_to_end(database, arguments.model_rows)
            results.update(model_seconds=model_seconds, e2e_seconds=store_seconds, e2e_rows=count)
            print(f"\nend to end, local model, {count} short sentences (SciFact titles):")
            print(f"  model alone        {count / model_seconds:8.1f} texts/s")
            print(
                f"  pgrecall remember  {count / store_seconds:8.1f} memories/s "
                f"({model_seconds / store_seconds:.3f}x the model alone)"
            )
    write_json(OUT / "ingest.json", results)


if __name__ == "__main__":
    asyncio.run(main())
