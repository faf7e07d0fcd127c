"""Levers of BM25 from the keyword postings (issue 25), each alone against the shipped statement.

    python -m benchmarks.keyword_levers [--claims 150] [--data-dir DIR]

SciFact's abstracts in one namespace (written through ``remember``, seeded vectors: keyword
recall needs none), postings moved. The store's keyword statement for the first claim is
captured, then rewritten into variants that differ by one lever; each claim runs every variant
on one connection, prepared, the order reversed every other claim. Printed: p50 and p99 of each,
the ratio to the shipped one, and how many result lists (ids and scores to 1e-9) are identical.

- ``shipped``: BM25's N from ``memory_term_counts`` plus the unmoved rows (migration 0015);
- ``N counted``: N counted on the namespace btree, as before 0015;
- ``df stored``: document frequencies read from a table of (namespace, lexeme, df) built here
  by hand, instead of grouped from the postings read;
- ``postings inline``: the ``moved`` CTE not materialized on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import asyncpg
import numpy as np

from benchmarks.common import CONTENT_ONLY, PrecomputedEmbedder, embedded_server, fresh_database
from benchmarks.scifact import _load
from pgrecall import MemoryInput, MemoryStore, load_settings

NAMESPACE = "scifact"
WARMUP = 10
FREQUENCY = "SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme"
STORED_FREQUENCY = (
    "SELECT lexeme, df::float8 AS df FROM lever_df WHERE namespace = $1::text"
    " AND lexeme = ANY(ARRAY(SELECT lexeme FROM terms))"
)
LEVER_DF = (
    "DROP TABLE IF EXISTS lever_df",
    "CREATE TABLE lever_df AS SELECT namespace, lexeme, count(*) AS df FROM memory_terms"
    " GROUP BY namespace, lexeme",
    "ALTER TABLE lever_df ADD PRIMARY KEY (namespace, lexeme) INCLUDE (df)",
    "VACUUM ANALYZE lever_df",
)


def _between(text: str, start: str, end: str) -> str:
    """The part of ``text`` from ``start`` to the first ``end`` after it, both included."""
    first = text.index(start)
    return text[first : text.index(end, first) + len(end)]


def variants(shipped: str) -> dict[str, str]:
    """The shipped keyword statement and one variant per lever."""
    stored_n = _between(shipped, "((SELECT coalesce(sum(c.documents), 0)", "NOT m.terms_indexed))")
    counted_n = "(SELECT count(*) FROM memories WHERE namespace = $1::text)"
    return {
        "shipped": shipped,
        "N counted": shipped.replace(stored_n, counted_n),
        "df stored": shipped.replace(FREQUENCY, STORED_FREQUENCY),
        "postings inline": shipped.replace("moved AS MATERIALIZED", "moved AS"),
    }


class _Capture:
    """The store's pool, keeping the last statement it was sent."""

    def __init__(self, pool: Any) -> None:
        self.pool, self.last = pool, ("", ())

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.last = (sql, args)
        return await self.pool.fetch(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


async def _statement(database: str, claim: str) -> tuple[str, tuple[Any, ...]]:
    """Write SciFact, move its postings, and capture the keyword statement of ``claim``."""
    settings = load_settings(
        database_url=database, worker=False, auto_migrate=False, **CONTENT_ONLY
    )
    store = await MemoryStore.open(settings, embedder=PrecomputedEmbedder())
    try:
        memories = _load("memories.jsonl")
        for start in range(0, len(memories), 500):
            batch = memories[start : start + 500]
            await store.remember(
                [MemoryInput(m["text"], key=m["id"]) for m in batch], namespace=NAMESPACE
            )
        await store.postings.catch_up()
        capture = _Capture(store._query._pool)
        store._query._pool = capture  # type: ignore[assignment]
        await store.recall(claim, namespace=NAMESPACE, k=10, mode="keyword")
        return capture.last
    finally:
        await store.close()


async def _plans(
    connection: asyncpg.Connection, legs: dict[str, str], args: tuple[Any, ...], claims: list[str]
) -> dict[str, tuple[float, float]]:
    """p50 execution time (ms) and buffers of each leg over the claims, from EXPLAIN (ANALYZE,
    BUFFERS), legs alternated: the server's own time, less moved by the load than a round trip."""
    executed: dict[str, list[float]] = {name: [] for name in legs}
    buffers: dict[str, list[float]] = {name: [] for name in legs}
    for index, claim in enumerate(claims):
        for name in list(legs) if index % 2 else list(legs)[::-1]:
            rows = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {legs[name]}", args[0], claim, *args[2:]
            )
            plan = json.loads(rows[0][0])[0]
            executed[name].append(plan["Execution Time"])
            buffers[name].append(
                plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
            )
    return {
        name: (float(np.median(executed[name])), float(np.median(buffers[name]))) for name in legs
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=150)
    arguments = parser.parse_args()
    claims = [q["question"] for q in _load("queries.jsonl", arguments.claims)]
    async with embedded_server() as dsn:
        database = await fresh_database(dsn, "keyword_levers")
        shipped, args = await _statement(database, claims[0])
        connection = await asyncpg.connect(database)
        try:
            for command in (*LEVER_DF, "VACUUM ANALYZE memories", "VACUUM ANALYZE memory_terms"):
                await connection.execute(command)
            legs = variants(shipped)
            prepared = {name: await connection.prepare(sql) for name, sql in legs.items()}

            async def run(name: str, claim: str) -> tuple[float, list[tuple[Any, float]]]:
                started = time.perf_counter()
                rows = await prepared[name].fetch(args[0], claim, *args[2:])
                elapsed = time.perf_counter() - started
                return elapsed, [(row["id"], round(row["score"], 9)) for row in rows]

            for claim in claims[:WARMUP]:
                for name in legs:
                    await run(name, claim)
            latencies: dict[str, list[float]] = {name: [] for name in legs}
            same = dict.fromkeys(legs, 0)
            for index, claim in enumerate(claims):
                found = {}
                for name in list(legs) if index % 2 else list(legs)[::-1]:
                    elapsed, found[name] = await run(name, claim)
                    latencies[name].append(elapsed)
                for name in legs:
                    same[name] += found[name] == found["shipped"]
            plans = await _plans(connection, legs, args, claims)
            generic = await connection.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " ORDER BY prepare_time"
            )
        finally:
            await connection.close()
    base = float(np.median(latencies["shipped"]))
    print(f"SciFact, {len(claims)} claims, keyword statement alone, one connection:")
    for name, values in latencies.items():
        p50, p99 = float(np.median(values)), float(np.percentile(values, 99))
        executed, buffers = plans[name]
        print(
            f"  {name:<16} p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
            f"{p50 / base:4.2f}x  identical {same[name]}/{len(claims)}  "
            f"EXPLAIN ANALYZE: execution p50 {executed:5.2f} ms, buffers p50 {buffers:.0f}"
        )
    print("generic/custom plans per leg:", [tuple(row) for row in generic])
    print("load " + " ".join(f"{value:.2f}" for value in os.getloadavg()))


if __name__ == "__main__":
    asyncio.run(main())
