"""Where BM25 from the keyword postings spends its time (issue 25): the store's keyword statement
against variants that drop or replace one piece each, and the Python side of a recall.

    python -m benchmarks.keyword_levers [--claims 300]

SciFact's abstracts in one namespace (written through ``remember``, seeded vectors: keyword
recall needs none), postings moved, tables analyzed. The store's keyword statement for the first
claim is captured, then rewritten into variants; each claim runs every variant on one
connection, prepared, the order reversed every other claim, so the load falls on each alike.
Printed per variant: p50 and p99 of the round trip, the p50 saved against the shipped statement
(what that piece costs), how many result lists (ids and scores to 1e-9) are identical, and from
``EXPLAIN (ANALYZE, TIMING OFF, BUFFERS)`` the execution p50 and buffers p50 (no per-node
clock: EXPLAIN's timing inflates every node).

Variants (each alone; the scores change where a value is replaced, the work does not):
- ``N literal``: BM25's N a constant instead of the stored count plus the unmoved rows;
- ``avgdl literal``: the average length a constant instead of the DISTINCT over the postings;
- ``df literal``: document frequencies a constant instead of grouped from the postings;
- ``no alive``: the scope's probe of the best-scored rows dropped;
- ``no unmoved``: the branch of the rows not moved yet dropped (none here);
- ``moved inline``: the ``moved`` CTE not materialized on its own;
- ``no pending``: the pending count a constant;
- ``score sum(tf)``: BM25's arithmetic replaced by a sum of the term frequencies;
- ``N, avgdl, df literal``: the three statistics constants at once;
- ``read only``: the postings read and counted, nothing else (the floor).

Then the Python side: each claim's ``MemoryStore.recall`` (keyword mode) against its
statement's round trip, timed apart on the same connection pool; with ``--profile``, a
cProfile of the recalls (the top functions by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
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
AVERAGE_LENGTH = (
    "(SELECT avg(dl) FROM (SELECT DISTINCT namespace, id, dl FROM postings) AS documents)"
)
PENDING = "(SELECT count(*) AS n FROM memories"


def _between(text: str, start: str, end: str) -> str:
    """The part of ``text`` from ``start`` to the first ``end`` after it, both included."""
    first = text.index(start)
    return text[first : text.index(end, first) + len(end)]


def _replaced(text: str, old: str, new: str) -> str:
    if old not in text:
        raise ValueError(f"the statement no longer holds {old[:60]!r}")
    return text.replace(old, new)


def variants(shipped: str, documents: int, average: float) -> dict[str, str]:
    """The shipped keyword statement and one variant per piece (see the module's docstring)."""
    stored_n = _between(shipped, "((SELECT coalesce(sum(c.documents), 0)", "NOT m.terms_indexed))")
    alive = _between(shipped, "CROSS JOIN LATERAL (\n                SELECT 1", "AS alive")
    unmoved = _between(shipped, "UNION ALL\n            SELECT d.namespace", "unnest(d.hits) AS t")
    pending = _between(shipped, PENDING, ") AS pending")
    read = shipped[: shipped.index("unmoved AS MATERIALIZED")].rstrip().rstrip(",")
    bm25 = _between(shipped, "sum(ln(1 + (c.n", "/ greatest(c.avgdl, 1))))")
    statistics = _replaced(
        _replaced(_replaced(shipped, stored_n, f"{documents}"), AVERAGE_LENGTH, f"{average}"),
        FREQUENCY,
        "SELECT lexeme, 100::float8 AS df FROM terms",
    )
    return {
        "shipped": shipped,
        "N literal": _replaced(shipped, stored_n, f"{documents}"),
        "avgdl literal": _replaced(shipped, AVERAGE_LENGTH, f"{average}"),
        "df literal": _replaced(shipped, FREQUENCY, "SELECT lexeme, 100::float8 AS df FROM terms"),
        "no alive": _replaced(shipped, alive, ""),
        "no unmoved": _replaced(shipped, unmoved, ""),
        "moved inline": _replaced(shipped, "moved AS MATERIALIZED", "moved AS"),
        "no pending": _replaced(shipped, pending, "(SELECT 0::bigint AS n) AS pending"),
        "score sum(tf)": _replaced(
            shipped, bm25, "sum(p.tf + 0 * c.n * f.df * $3::float8 * $4::float8)"
        ),
        "N, avgdl, df literal": statistics,
        "read only": read
        + (
            # k1 and b ($3, $4) kept as placeholders: every leg binds the same values.
            "\nSELECT count(*) AS pending, sum(tf) + 0 * $3::float8 * $4::float8 AS score"
            " FROM moved"
        ),
    }


class _Capture:
    """The store's pool, keeping the last statement it was sent and the time of each fetch."""

    def __init__(self, pool: Any) -> None:
        self.pool, self.last, self.fetched = pool, ("", ()), 0.0

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.last = (sql, args)
        started = time.perf_counter()
        try:
            return await self.pool.fetch(sql, *args)
        finally:
            self.fetched = time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


async def _store(database: str) -> tuple[MemoryStore, _Capture]:
    """SciFact written and its postings moved, in a store whose pool keeps its statements."""
    settings = load_settings(
        database_url=database, worker=False, auto_migrate=False, **CONTENT_ONLY
    )
    store = await MemoryStore.open(settings, embedder=PrecomputedEmbedder())
    memories = _load("memories.jsonl")
    for start in range(0, len(memories), 500):
        batch = memories[start : start + 500]
        await store.remember(
            [MemoryInput(m["text"], key=m["id"], metadata={"doc": m["id"]}) for m in batch],
            namespace=NAMESPACE,
        )
    await store.postings.catch_up()
    capture = _Capture(store._query._pool)
    store._query._pool = capture  # type: ignore[assignment]
    return store, capture


async def _plans(
    connection: asyncpg.Connection, legs: dict[str, str], args: tuple[Any, ...], claims: list[str]
) -> dict[str, tuple[float, float]]:
    """p50 execution time (ms) and buffers of each leg over the claims, from EXPLAIN (ANALYZE,
    TIMING OFF, BUFFERS), legs alternated."""
    executed: dict[str, list[float]] = {name: [] for name in legs}
    buffers: dict[str, list[float]] = {name: [] for name in legs}
    for index, claim in enumerate(claims):
        for name in list(legs) if index % 2 else list(legs)[::-1]:
            rows = await connection.fetch(
                f"EXPLAIN (ANALYZE, TIMING OFF, BUFFERS, FORMAT JSON) {legs[name]}",
                args[0],
                claim,
                *args[2:],
            )
            plan = json.loads(rows[0][0])[0]
            executed[name].append(plan["Execution Time"])
            buffers[name].append(
                plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
            )
    return {
        name: (float(np.median(executed[name])), float(np.median(buffers[name]))) for name in legs
    }


async def _statements(
    connection: asyncpg.Connection, legs: dict[str, str], args: tuple[Any, ...], claims: list[str]
) -> None:
    """Every leg on every claim, prepared, alternated; prints the table."""
    prepared = {name: await connection.prepare(sql) for name, sql in legs.items()}

    async def run(name: str, claim: str) -> tuple[float, list[tuple[Any, float]]]:
        started = time.perf_counter()
        rows = await prepared[name].fetch(args[0], claim, *args[2:])
        elapsed = time.perf_counter() - started
        return elapsed, [(row.get("id"), round(float(row["score"] or 0), 9)) for row in rows]

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
    shown = await connection.fetch(
        f"EXPLAIN (ANALYZE, TIMING OFF, BUFFERS) {legs['shipped']}", args[0], claims[0], *args[2:]
    )
    print("the shipped statement, the first claim:")
    print("\n".join(row[0] for row in shown))
    base = float(np.median(latencies["shipped"]))
    print(
        f"SciFact, {len(claims)} claims, keyword statement alone, one connection"
        f" ({_load_average()}):"
    )
    for name, values in latencies.items():
        p50, p99 = float(np.median(values)), float(np.percentile(values, 99))
        executed, buffers = plans[name]
        print(
            f"  {name:<14} p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
            f"saves {(base - p50) * 1000:5.2f} ms ({p50 / base:4.2f}x)  "
            f"identical {same[name]}/{len(claims)}  "
            f"execution p50 {executed:5.2f} ms  buffers p50 {buffers:.0f}",
            flush=True,
        )


async def _python_side(
    store: MemoryStore, capture: _Capture, claims: list[str], profile: bool
) -> None:
    """Each claim's keyword recall against its statement's round trip (the rest is Python)."""
    for claim in claims[:WARMUP]:
        await store.recall(claim, namespace=NAMESPACE, k=10, mode="keyword")
    profiler = cProfile.Profile() if profile else None
    totals, fetches = [], []
    for claim in claims:
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        await store.recall(claim, namespace=NAMESPACE, k=10, mode="keyword")
        totals.append(time.perf_counter() - started)
        if profiler:
            profiler.disable()
        fetches.append(capture.fetched)
    rest = [total - fetch for total, fetch in zip(totals, fetches, strict=True)]
    print(
        f"keyword recall in-process ({_load_average()}): p50 {np.median(totals) * 1000:.2f} ms, "
        f"its statement's round trip p50 {np.median(fetches) * 1000:.2f} ms, "
        f"the rest (Python) p50 {np.median(rest) * 1000:.2f} ms, p99 "
        f"{np.percentile(rest, 99) * 1000:.2f} ms"
    )
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="cProfile the Python side")
    arguments = parser.parse_args()
    claims = [q["question"] for q in _load("queries.jsonl", arguments.claims)]
    async with embedded_server() as dsn:
        database = await fresh_database(dsn, "keyword_levers")
        store, capture = await _store(database)
        try:
            connection = await asyncpg.connect(database)
            try:
                for table in ("memories", "memory_terms", "memory_term_counts"):
                    await connection.execute(f"VACUUM ANALYZE {table}")
                await store.recall(claims[0], namespace=NAMESPACE, k=10, mode="keyword")
                shipped, args = capture.last
                documents, average = await connection.fetchrow(
                    "SELECT count(*), avg(length(search))::float8 FROM memories"
                )
                legs = variants(shipped, documents, average)
                await _statements(connection, legs, args, claims)
            finally:
                await connection.close()
            await _python_side(store, capture, claims, arguments.profile)
        finally:
            await store.close()


def _load_average() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    asyncio.run(main())
