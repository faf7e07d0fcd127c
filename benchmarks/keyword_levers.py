"""Where BM25 from the keyword postings spends its time (issue 25): the store's keyword statement
against variants that drop or replace one piece each, and the Python side of a recall.

    python -m benchmarks.keyword_levers [--claims 300] [--mode hybrid] [--baseline DIR] [--profile]
                                        [--python]

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
- ``no pending``: the pending count a constant;
- ``score sum(tf)``: BM25's arithmetic replaced by a sum of the term frequencies;
- ``statistics literal``: N, avgdl and df constants at once;
- ``read only``: the postings read and counted, nothing else (the floor);
and the levers of session 13, each undone alone (same scores):
- ``BM25 per posting``: the idf, (k1 + 1) and the length's factors computed per posting;
- ``moved materialized``: the postings read copied once more, as a CTE of their own;
- ``avgdl keyed by namespace``: the average length's DISTINCT over (namespace, id, dl);
``--python`` (keyword) measures instead the statement against BM25 scored in Python
(recall/bm25.py: the postings statement, packed as bytes, as arrays or as one record a
posting, the scoring, the winners' statement), alternated claim by claim: round trips, the
client's CPU (this thread) and the backend's, identical hits (ids in order, scores to 1e-9).
``--mode hybrid`` measures the fused statement instead (seeded vectors, copied as the worker
would), with the shipped leg and the levers undone only. With ``--baseline DIR`` (a checkout
of another version, e.g. main), that version's statement is a leg too, captured in a child
process running its code on the same database.

Each leg's backend CPU per statement is read from ``/proc/<pid>/schedstat`` around it
(nanoseconds on the CPU): on a shared machine it moves far less than the round trip.

Then the Python side: each claim's ``MemoryStore.recall`` (in that mode) against its
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
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from benchmarks.common import CONTENT_ONLY, PrecomputedEmbedder, embedded_server, fresh_database
from benchmarks.scifact import _load
from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.db.params import SqlParams
from pgrecall.db.vectors import register_vector_codec
from pgrecall.recall import bm25
from pgrecall.recall.split import given_ranking
from pgrecall.recall.sql import fused, fused_hits, recall_scope, statement
from pgrecall.records import Mode, RecallOptions

NAMESPACE = "scifact"
WARMUP = 10
FREQUENCY = "SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme"
DOCUMENTS = "(SELECT DISTINCT id, dl FROM postings)"
AVERAGE_LENGTH = f"(SELECT avg(dl) FROM {DOCUMENTS} AS documents)"
PENDING = "(SELECT count(*) AS n FROM memories"
BM25 = "sum(f.weight * p.tf / (p.tf + c.fixed + c.per_length * p.dl))"
# BM25 before session 13: every factor computed per posting.
PER_POSTING = """frequency AS (
            SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme
        ),
collection AS (
            SELECT {count}::float8 AS n, {average}::float8 AS avgdl
        ),
scored AS (
            SELECT p.namespace, p.id,
                   sum(ln(1 + (c.n - f.df + 0.5) / (f.df + 0.5))
                       * p.tf * ({k1} + 1)
                       / (p.tf + {k1} * (1 - {b} + {b} * p.dl
                                               / greatest(c.avgdl, 1))))
                   AS score
            FROM postings p JOIN frequency f USING (lexeme), collection c
            GROUP BY p.namespace, p.id
        )"""
# A child process on another checkout: its store's keyword statement for argv[2] on argv[1].
BASELINE = """
import asyncio, sys
from benchmarks.common import CONTENT_ONLY, PrecomputedEmbedder
from pgrecall import MemoryStore, load_settings
from pgrecall.config import Settings

async def main():
    # One statement per recall, where the version can split hybrid recall in three.
    split = {"hybrid_split": False} if "hybrid_split" in Settings.model_fields else {}
    settings = load_settings(
        database_url=sys.argv[1], worker=False, auto_migrate=False, **CONTENT_ONLY, **split
    )
    store = await MemoryStore.open(settings, embedder=PrecomputedEmbedder())
    pool, sent = store._query._pool, []

    class Capture:
        async def fetch(self, sql, *args):
            sent.append(sql)
            return await pool.fetch(sql, *args)

        def __getattr__(self, name):
            return getattr(pool, name)

    store._query._pool = Capture()
    try:
        await store.recall(sys.argv[2], namespace=sys.argv[3], k=10, mode=sys.argv[4])
    finally:
        await store.close()
    sys.stdout.write(sent[-1])

asyncio.run(main())
"""


def _between(text: str, start: str, end: str) -> str:
    """The part of ``text`` from ``start`` to the first ``end`` after it, both included."""
    first = text.index(start)
    return text[first : text.index(end, first) + len(end)]


def _replaced(text: str, old: str, new: str) -> str:
    if old not in text:
        raise ValueError(f"the statement no longer holds {old[:60]!r}")
    return text.replace(old, new)


# The levers of session 13, each undone alone (see ``variants``).
UNDONE = ("BM25 per posting", "moved materialized", "avgdl keyed by namespace")


def variants(shipped: str, documents: int, average: float) -> dict[str, str]:
    """The shipped keyword statement and one variant per piece (see the module's docstring)."""
    stored_n = _between(shipped, "((SELECT coalesce(sum(c.documents), 0)", "NOT m.terms_indexed))")
    alive = _between(shipped, "CROSS JOIN LATERAL (\n                SELECT 1", "AS alive")
    unmoved = _between(shipped, "UNION ALL\n            SELECT d.namespace", "unnest(d.hits) AS t")
    pending = _between(shipped, PENDING, ") AS pending")
    read = shipped[: shipped.index("unmoved AS MATERIALIZED")].rstrip().rstrip(",")
    scoring = _between(shipped, "collection AS (", "GROUP BY p.namespace, p.id\n        )")
    constant_df = "SELECT lexeme, 100::float8 AS df FROM terms"
    statistics = _replaced(
        _replaced(_replaced(shipped, stored_n, f"{documents}"), AVERAGE_LENGTH, f"{average}"),
        FREQUENCY,
        constant_df,
    )
    # BM25's k1 and b, placeholders of the statement: every leg binds the same values.
    factors = re.search(r"SELECT (\$\d+::float8) \* \(1 - (\$\d+::float8)\) AS fixed", shipped)
    if factors is None:
        raise ValueError("the statement no longer holds BM25's k1 (1 - b)")
    k1, b = factors.groups()
    per_posting = PER_POSTING.format(count=stored_n, average=AVERAGE_LENGTH, k1=k1, b=b)
    return {
        "shipped": shipped,
        "N literal": _replaced(shipped, stored_n, f"{documents}"),
        "avgdl literal": _replaced(shipped, AVERAGE_LENGTH, f"{average}"),
        "df literal": _replaced(shipped, FREQUENCY, constant_df),
        "no alive": _replaced(shipped, alive, ""),
        "no unmoved": _replaced(shipped, unmoved, ""),
        "no pending": _replaced(shipped, pending, "(SELECT 0::bigint AS n) AS pending"),
        "score sum(tf)": _replaced(
            shipped, BM25, "sum(p.tf + 0 * f.weight * c.fixed * c.per_length)"
        ),
        "statistics literal": statistics,
        "read only": read
        + (f"\nSELECT count(*) AS pending, sum(tf) + 0 * {k1} * {b} AS score FROM moved"),
        "BM25 per posting": _replaced(shipped, scoring, per_posting),
        "moved materialized": _replaced(shipped, "moved AS (", "moved AS MATERIALIZED ("),
        "avgdl keyed by namespace": _replaced(
            shipped, DOCUMENTS, "(SELECT DISTINCT namespace, id, dl FROM postings)"
        ),
    }


def baseline(directory: Path, database: str, claim: str, mode: str) -> str:
    """The ``mode`` statement of the checkout in ``directory`` for ``claim`` on ``database``."""
    environment = dict(os.environ, PYTHONPATH=f"{directory / 'src'}:{directory}")
    done = subprocess.run(
        [sys.executable, "-c", BASELINE, database, claim, NAMESPACE, mode],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


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
    """SciFact written and its postings moved, in a store whose pool keeps its statements
    (one statement per recall: hybrid not split in three, recall/split.py; BM25 scored by
    PostgreSQL, not in Python, recall/bm25.py)."""
    settings = load_settings(
        database_url=database,
        worker=False,
        auto_migrate=False,
        hybrid_split=False,
        keyword_scoring="sql",  # the statement the variants rewrite
        **CONTENT_ONLY,
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
    await store.copies.catch_up()
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
                *_with_claim(args, claims[0], claim),
            )
            plan = json.loads(rows[0][0])[0]
            executed[name].append(plan["Execution Time"])
            buffers[name].append(
                plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
            )
    return {
        name: (float(np.median(executed[name])), float(np.median(buffers[name]))) for name in legs
    }


def _with_claim(args: tuple[Any, ...], captured: str, claim: str) -> tuple[Any, ...]:
    """The arguments of the statement captured for claim ``captured``, for ``claim``."""
    return tuple(claim if value == captured else value for value in args)


def _on_cpu(pid: int) -> float:
    """Seconds process ``pid`` has spent on a CPU (schedstat: nanoseconds, not clock ticks)."""
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as stat:
        return int(stat.read().split()[0]) / 1e9


async def _statements(
    connection: asyncpg.Connection, legs: dict[str, str], args: tuple[Any, ...], claims: list[str]
) -> None:
    """Every leg on every claim, prepared, alternated; prints the table."""
    prepared = {name: await connection.prepare(sql) for name, sql in legs.items()}
    backend = await connection.fetchval("SELECT pg_backend_pid()")
    cpu: dict[str, list[float]] = {name: [] for name in legs}

    async def run(name: str, claim: str) -> tuple[float, list[tuple[Any, float]]]:
        before = _on_cpu(backend)
        started = time.perf_counter()
        rows = await prepared[name].fetch(*_with_claim(args, claims[0], claim))
        elapsed = time.perf_counter() - started
        cpu[name].append(_on_cpu(backend) - before)
        return elapsed, [(row.get("id"), round(float(row["score"] or 0), 9)) for row in rows]

    for claim in claims[:WARMUP]:
        for name in legs:
            await run(name, claim)
    latencies: dict[str, list[float]] = {name: [] for name in legs}
    for values in cpu.values():
        values.clear()
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
        f"EXPLAIN (ANALYZE, TIMING OFF, BUFFERS) {legs['shipped']}", *args
    )
    print("the shipped statement, the first claim:")
    print("\n".join(row[0] for row in shown))
    base = float(np.median(latencies["shipped"]))
    base_cpu = float(np.mean(cpu["shipped"]))
    print(
        f"SciFact, {len(claims)} claims, the statement alone, one connection ({_load_average()}):"
    )
    for name, values in latencies.items():
        p50, p99 = float(np.median(values)), float(np.percentile(values, 99))
        executed, buffers = plans[name]
        print(
            f"  {name:<24} p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
            f"saves {(base - p50) * 1000:5.2f} ms ({p50 / base:4.2f}x)  backend CPU mean "
            f"{np.mean(cpu[name]) * 1000:5.2f} ms ({np.mean(cpu[name]) / base_cpu:4.2f}x)  "
            f"identical {same[name]}/{len(claims)}  "
            f"execution p50 {executed:5.2f} ms  buffers p50 {buffers:.0f}",
            flush=True,
        )


async def _python_side(
    store: MemoryStore, capture: _Capture, claims: list[str], profile: bool, mode: Mode
) -> None:
    """Each claim's keyword recall against its statement's round trip (the rest is Python)."""
    for claim in claims[:WARMUP]:
        await store.recall(claim, namespace=NAMESPACE, k=10, mode=mode)
    profiler = cProfile.Profile() if profile else None
    totals, fetches = [], []
    for claim in claims:
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        await store.recall(claim, namespace=NAMESPACE, k=10, mode=mode)
        totals.append(time.perf_counter() - started)
        if profiler:
            profiler.disable()
        fetches.append(capture.fetched)
    rest = [total - fetch for total, fetch in zip(totals, fetches, strict=True)]
    print(
        f"{mode} recall in-process ({_load_average()}): p50 {np.median(totals) * 1000:.2f} ms, "
        f"its statement's round trip p50 {np.median(fetches) * 1000:.2f} ms, "
        f"the rest (Python; in hybrid, the query's embedding too) p50 "
        f"{np.median(rest) * 1000:.2f} ms, p99 {np.percentile(rest, 99) * 1000:.2f} ms"
    )
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())


# ``--python``: the postings packed as bytes per lexeme (the module's statement), or as arrays.
ARRAYS = (
    ("string_agg(uuid_send(id), ''::bytea) AS ids", "array_agg(id) AS ids"),
    ("string_agg(int4send(tf), ''::bytea) AS tfs", "array_agg(tf) AS tfs"),
    ("string_agg(int4send(dl), ''::bytea) AS dls", "array_agg(dl) AS dls"),
)
# ``--python``'s third leg: each posting packed as one 24-byte record by one aggregate.
RECORDS = (
    "string_agg(uuid_send(id), ''::bytea) AS ids",
    "string_agg(uuid_send(id) || int4send(tf) || int4send(dl), ''::bytea) AS ids",
)
RECORD = np.dtype([("id", "V16"), ("tf", ">i4"), ("dl", ">i4")])
# Candidates sent to the winners' statement before falling back to every scored memory.
CANDIDATES = 20


def _split_records(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Rows of the records variant split into the module's three columns."""
    split = []
    for row in rows:
        records = np.frombuffer(row["ids"], RECORD)
        split.append(
            {
                "namespace": row["namespace"],
                "lexeme": row["lexeme"],
                "ids": records["id"].tobytes(),
                "tfs": records["tf"].tobytes(),
                "dls": records["dl"].tobytes(),
                "documents": row["documents"],
            }
        )
    return split


def _packed(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Rows of the arrays variant packed as the module's statement packs them."""
    return [
        {
            "namespace": row["namespace"],
            "lexeme": row["lexeme"],
            "ids": b"".join(memory.bytes for memory in row["ids"]),
            "tfs": np.asarray(row["tfs"], ">i4").tobytes(),
            "dls": np.asarray(row["dls"], ">i4").tobytes(),
            "documents": row["documents"],
        }
        for row in rows
    ]


class _PythonPlan:
    """Keyword recall scored in Python (``pgrecall.recall.bm25``): the postings statement, the
    scoring, then the winners read in score order with the scope checked (``fused_hits``'
    recheck over the best ``CANDIDATES``; every scored memory when fewer pass)."""

    def __init__(self, arrays: bool, k1: float, b: float, records: bool = False) -> None:
        self.arrays, self.records, self.k1, self.b = arrays, records, k1, b
        params = SqlParams()
        text = params.add("", "text")
        self.postings_sql = bm25.postings_statement(
            bm25.namespaces_scope(params, [NAMESPACE], generic=True), text
        )
        if arrays:
            for old, new in ARRAYS:
                self.postings_sql = _replaced(self.postings_sql, old, new)
        if records:
            self.postings_sql = _replaced(self.postings_sql, *RECORDS)
        self.parts: dict[str, list[float]] = {
            "postings": [],
            "numpy": [],
            "winners": [],
            "count": [],
            "fallback": [],
        }

    def winners(self, scored: bm25.Scored, count: int) -> tuple[str, list[object]]:
        params = SqlParams()
        scope = recall_scope(params, [NAMESPACE], RecallOptions(mode="keyword"), generic=True)
        given = given_ranking(params, scored.top(count))
        hits = fused_hits(scope, fused(None, given, None), None, "10", "NULL::vector", recheck=True)
        return statement([], scope, hits), params.values

    async def run(self, connection: asyncpg.Connection, claim: str) -> list[asyncpg.Record]:
        started = time.perf_counter()
        rows = await connection.fetch(self.postings_sql, claim, NAMESPACE)
        fetched = time.perf_counter()
        packed = _packed(rows) if self.arrays else _split_records(rows) if self.records else rows
        scored = bm25.ranked(packed, self.k1, self.b)
        scoring = time.perf_counter()
        sql, values = self.winners(scored, CANDIDATES)
        hits = await connection.fetch(sql, *values)
        found = sum(row["id"] is not None for row in hits)
        fallback = found < 10 and len(scored) > CANDIDATES
        if fallback:
            sql, values = self.winners(scored, len(scored))
            hits = await connection.fetch(sql, *values)
        done = time.perf_counter()
        self.parts["postings"].append(fetched - started)
        self.parts["numpy"].append(scoring - fetched)
        self.parts["winners"].append(done - scoring)
        self.parts["count"].append(bm25.postings_read(packed))
        self.parts["fallback"].append(fallback)
        return list(hits)


def _same(ours: list[tuple[Any, float]], theirs: list[tuple[Any, float]]) -> bool:
    """The same ids in the same order, each score within 1e-9."""
    return len(ours) == len(theirs) and all(
        a == c and abs(b - d) <= 1e-9 * max(1.0, abs(d))
        for (a, b), (c, d) in zip(ours, theirs, strict=True)
    )


async def _python_legs(
    connection: asyncpg.Connection,
    shipped: str,
    args: tuple[Any, ...],
    claims: list[str],
    k1: float,
    b: float,
) -> None:
    """The shipped statement against the Python plan (bytes and arrays), alternated claim by
    claim: round trip, client CPU (this thread), backend CPU, identical hits, the plan's parts."""
    prepared = await connection.prepare(shipped)
    backend = await connection.fetchval("SELECT pg_backend_pid()")
    plans = {
        "python (bytes)": _PythonPlan(False, k1, b),
        "python (arrays)": _PythonPlan(True, k1, b),
        "python (records)": _PythonPlan(False, k1, b, records=True),
    }

    async def leg(name: str, claim: str) -> list[asyncpg.Record]:
        if name == "shipped":
            return list(await prepared.fetch(*_with_claim(args, claims[0], claim)))
        return await plans[name].run(connection, claim)

    names = ["shipped", *plans]
    latency: dict[str, list[float]] = {name: [] for name in names}
    client: dict[str, list[float]] = {name: [] for name in names}
    server: dict[str, list[float]] = {name: [] for name in names}
    same = dict.fromkeys(names, 0)
    ties = 0
    for turn, claim in enumerate(claims[:WARMUP] + claims):
        found = {}
        for name in names if turn % 2 else names[::-1]:
            before, cpu, started = _on_cpu(backend), time.thread_time(), time.perf_counter()
            rows = await leg(name, claim)
            elapsed = time.perf_counter() - started
            if turn >= WARMUP:
                latency[name].append(elapsed)
                client[name].append(time.thread_time() - cpu)
                server[name].append(_on_cpu(backend) - before)
            found[name] = [(row["id"], float(row["score"])) for row in rows if row["id"]]
        if turn >= WARMUP:
            scores = [score for _, score in found["shipped"]]
            ties += len(set(scores)) < len(scores)
            for name in names:
                same[name] += _same(found[name], found["shipped"])
    for plan in plans.values():
        for values in plan.parts.values():
            del values[:WARMUP]
    base = float(np.median(latency["shipped"]))
    print(
        f"SciFact keyword, {len(claims)} claims, the shipped statement against BM25 scored in "
        f"Python, one connection ({_load_average()}); claims with tied scores in the top 10: "
        f"{ties}"
    )
    for name in names:
        p50, p99 = float(np.median(latency[name])), float(np.percentile(latency[name], 99))
        print(
            f"  {name:<16} p50 {p50 * 1000:6.2f} ms ({p50 / base:4.2f}x)  p99 {p99 * 1000:6.2f} ms"
            f"  client CPU mean {np.mean(client[name]) * 1000:5.2f} ms  backend CPU mean "
            f"{np.mean(server[name]) * 1000:5.2f} ms  identical {same[name]}/{len(claims)}",
            flush=True,
        )
    for name, plan in plans.items():
        parts = plan.parts
        print(
            f"  {name}: postings statement p50 {np.median(parts['postings']) * 1000:.2f} ms, "
            f"scoring {np.median(parts['numpy']) * 1000:.2f} ms (p99 "
            f"{np.percentile(parts['numpy'], 99) * 1000:.2f}), winners "
            f"{np.median(parts['winners']) * 1000:.2f} ms; postings a claim p50 "
            f"{np.median(parts['count']):.0f}, p99 {np.percentile(parts['count'], 99):.0f}; "
            f"fallbacks {sum(parts['fallback'])}",
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="cProfile the Python side")
    parser.add_argument("--mode", choices=("keyword", "hybrid"), default="keyword")
    parser.add_argument(
        "--python", action="store_true", help="keyword: BM25 scored in Python (recall/bm25.py)"
    )
    parser.add_argument(
        "--baseline", type=Path, default=None, help="a checkout whose keyword statement is a leg"
    )
    arguments = parser.parse_args()
    claims = [q["question"] for q in _load("queries.jsonl", arguments.claims)]
    async with embedded_server() as dsn:
        database = await fresh_database(dsn, "keyword_levers")
        store, capture = await _store(database)
        try:
            connection = await asyncpg.connect(database)
            await register_vector_codec(connection)  # hybrid binds the query's vector
            try:
                for table in ("memories", "memory_terms", "memory_term_counts"):
                    await connection.execute(f"VACUUM ANALYZE {table}")
                await store.recall(claims[0], namespace=NAMESPACE, k=10, mode=arguments.mode)
                shipped, args = capture.last
                documents = await connection.fetchval("SELECT count(*) FROM memories")
                average = await connection.fetchval(
                    "SELECT avg(length(search))::float8 FROM memories"
                )
                if arguments.python:
                    settings = store.settings
                    await _python_legs(
                        connection, shipped, args, claims, settings.bm25_k1, settings.bm25_b
                    )
                    return
                legs = variants(shipped, documents, average)
                if arguments.mode == "hybrid":  # the same levers inside the fused statement
                    legs = {name: legs[name] for name in ("shipped", *UNDONE)}
                if arguments.baseline is not None:
                    legs["baseline"] = baseline(
                        arguments.baseline, database, claims[0], arguments.mode
                    )
                await _statements(connection, legs, args, claims)
            finally:
                await connection.close()
            await _python_side(store, capture, claims, arguments.profile, arguments.mode)
        finally:
            await store.close()


def _load_average() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    asyncio.run(main())
