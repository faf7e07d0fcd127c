"""What versions, valid time and the audit log (issue 20) cost the hot paths, measured
interleaved in one process so that a busy machine loads both sides alike.

    python -m benchmarks.versions_cost [--rows 100000] [--queries 200] [--ingest-rows 30000]

Recall: case (b) of ``recall_latency`` (100 namespaces of ``--rows / 100``, recall inside one).
Each query runs twice in turn, each side first every other query: as recall does by default
(facts whose validity has ended left out: one more condition per row) and with
``include_invalid=True`` (no valid-time condition, the statement of before). p50 of each, per
mode, and the ratio.

Ingest: ``remember`` of new memories in calls of 1,000 (the audit's entries written by a second
COPY in the same transaction), and after each call a bare COPY of the same number of audit
entries into another database: the share of a call's time the entries take at most.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import asyncpg

from benchmarks.common import (
    OUT,
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    write_json,
)
from benchmarks.recall_latency import MODES, Queries, load, make_queries
from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.audit import AUDIT_COPY_COLUMNS


async def recall_pairs(store: MemoryStore, queries: Queries) -> dict[str, Any]:
    """p50 per mode of the default recall and of include_invalid, each query in turn."""
    embedder = store.embedder
    assert isinstance(embedder, PrecomputedEmbedder)
    embedder.learn(queries.texts, queries.vectors)
    report: dict[str, Any] = {}
    for mode in MODES:
        timings: dict[bool, list[float]] = {False: [], True: []}
        for warm in (True, False):
            for number, (text, namespace) in enumerate(
                zip(queries.texts, queries.namespaces, strict=True)
            ):
                # Each side goes first every other query: the first run of a query finds its
                # namespace's pages colder than the second.
                order = (False, True) if number % 2 else (True, False)
                for include_invalid in order:
                    started = time.perf_counter()
                    await store.recall(
                        text,
                        namespace=namespace,
                        mode=mode,  # type: ignore[arg-type]
                        include_invalid=include_invalid,
                    )
                    if not warm:
                        timings[include_invalid].append(time.perf_counter() - started)
        with_condition = percentiles(timings[False])[0]
        without = percentiles(timings[True])[0]
        ratio = with_condition / without
        print(
            f"  {mode:<8} p50 default {with_condition:6.2f} ms, without the valid-time "
            f"condition {without:6.2f} ms: {ratio:.3f}x"
        )
        report[mode] = {"default_p50": with_condition, "include_invalid_p50": without}
    return report


async def ingest_share(dsn: str, rows: int) -> dict[str, Any]:
    """Seconds of remember per 1,000 new memories, and of a bare COPY of as many entries."""
    data = corpus([(f"ingest-{i:02d}", rows // 10) for i in range(10)], seed=3)
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts, data.vectors)
    database = await fresh_database(dsn, "versions_ingest")
    settings = load_settings(database_url=database, worker=False, auto_migrate=False)
    store = await MemoryStore.open(settings, embedder=embedder)
    scratch = await asyncpg.connect(await fresh_database(dsn, "versions_audit"))
    remember_seconds = audit_seconds = 0.0
    try:
        for start in range(0, len(data.texts), 1000):
            batch = [
                MemoryInput(data.texts[i], namespace=data.namespaces[i], metadata=data.metadata[i])
                for i in range(start, min(start + 1000, len(data.texts)))
            ]
            started = time.perf_counter()
            await store.remember(batch)
            remember_seconds += time.perf_counter() - started
            entries = [(m.namespace, uuid.uuid4(), "create", "user:bench", 1) for m in batch]
            started = time.perf_counter()
            await scratch.copy_records_to_table(
                "memory_audit", records=entries, columns=AUDIT_COPY_COLUMNS
            )
            audit_seconds += time.perf_counter() - started
    finally:
        await scratch.close()
        await store.close()
    count = len(data.texts)
    share = audit_seconds / remember_seconds
    print(
        f"  remember {count} new memories: {remember_seconds:.2f} s ({count / remember_seconds:.0f}"
        f"/s); a bare COPY of as many audit entries: {audit_seconds:.2f} s = {share:.1%} of it"
    )
    return {
        "rows": count,
        "remember_seconds": remember_seconds,
        "audit_copy_seconds": audit_seconds,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-rows", type=int, default=30_000)
    arguments = parser.parse_args()
    report: dict[str, Any] = {"machine": machine()}
    print(f"{machine()}; k=10, {arguments.queries} queries per mode, each run twice in turn\n")
    async with embedded_server() as dsn:
        namespaces = 100
        print(f"(b) {namespaces} namespaces of {arguments.rows // namespaces}, recall inside one")
        layout = [(f"agent-{i:03d}", arguments.rows // namespaces) for i in range(namespaces)]
        data = corpus(layout)
        queries = make_queries(data, None, arguments.queries)
        store = await load(await fresh_database(dsn, "versions_recall"), data)
        try:
            report["recall"] = await recall_pairs(store, queries)
        finally:
            await store.close()
        print("\ningest")
        report["ingest"] = await ingest_share(dsn, arguments.ingest_rows)
    write_json(OUT / "versions_cost.json", report)


if __name__ == "__main__":
    asyncio.run(main())
