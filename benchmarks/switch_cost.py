"""What changing the embedding model costs the hot paths: recall and ingest, before and after.

    python -m benchmarks.switch_cost [--cases a,b] [--rows 100000] [--queries 300]
                                     [--single 300] [--batches 5]

One process, one embedded PostgreSQL, the synthetic corpus of recall_latency: (a) one namespace
of ``--rows`` (through the HNSW graph), (b) 100 namespaces of ``--rows / 100`` (exact scans).
Each case is measured in four states, in turn: in its first space; after ``pgrecall reembed``
into a second space and ``--switch``; after ``--rollback``; after switching forward again. The
second space holds the same vectors under another model name, so what differs between the
states is the switch's doing (rows rewritten, the previous space's vectors kept in
``space_vectors``, the graph rebuilt), not the vectors. In each state: p50/p99 per recall mode
(the same queries), and ``remember`` of one memory a call and of 1,000 a call into a namespace
of that state's own. Ratios are to the first state, measured minutes before in the same process.

Each state is measured in a settled database: ``VACUUM (ANALYZE)`` of the whole database first
(a switch rewrites every row of ``memories`` and inserts and deletes as many in
``space_vectors``), then ``common.settle`` (no autovacuum worker busy, a checkpoint), again
before the ingest legs. A watcher samples ``pg_stat_activity`` every 0.5 s during each state;
the share of samples with an autovacuum worker busy is printed beside its figures. (Autovacuum
was suspected of the first run's slow batched ingest, 570-712/s; settled, it was busy in 0-3%
of the samples and the legs stayed as slow: the cause is the ingest lookup's plan for a
namespace the statistics have not seen, benchmarks/RESULTS.md, issue 21 session 11.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

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
    settle,
    write_json,
)
from benchmarks.recall_latency import MODES, Queries, make_queries, run_mode
from pgrecall import MemoryStore, load_settings
from pgrecall.config import Settings
from pgrecall.spaces import SpaceMover

FIRST, SECOND = "precomputed", "precomputed-next"
STATES = ("first space", "switched", "rolled back", "switched again")
WATCH_SECONDS = 0.5
_AUTOVACUUM_BUSY = (
    "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
)


def _settings(dsn: str) -> Settings:
    return load_settings(database_url=dsn, worker=False, auto_migrate=False, **CONTENT_ONLY)


def _embedder(model: str, *corpora: Corpus) -> PrecomputedEmbedder:
    embedder = PrecomputedEmbedder(model)
    for data in corpora:
        embedder.learn(data.texts, data.vectors)
    return embedder


async def _ingest(store: MemoryStore, data: Corpus, single: int) -> dict[str, float]:
    """Rates of ``remember``: the first ``single`` memories one a call, the rest 1,000 a call."""
    started = time.perf_counter()
    for i in range(single):
        await store.remember(data.texts[i], namespace=data.namespaces[i], metadata=data.metadata[i])
    one = single / (time.perf_counter() - started)
    rest = Corpus(
        data.texts[single:], data.metadata[single:], data.namespaces[single:], data.vectors[single:]
    )
    seconds = await remember_all(store, rest)
    return {"one_a_call": one, "thousand_a_call": len(rest.texts) / seconds}


async def _vacuumed(dsn: str) -> float:
    """``VACUUM (ANALYZE)`` of every table of ``dsn``'s database, then ``settle``; seconds."""
    started = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM (ANALYZE)")
    finally:
        await connection.close()
    await settle(dsn)
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def _autovacuum_watch(dsn: str) -> AsyncIterator[list[int]]:
    """Samples whether an autovacuum worker is busy every ``WATCH_SECONDS``; yields
    ``[busy samples, samples]``, filled until the block ends."""
    counts = [0, 0]
    connection = await asyncpg.connect(dsn)
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            counts[0] += bool(await connection.fetchval(_AUTOVACUUM_BUSY))
            counts[1] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_SECONDS)

    watcher = asyncio.create_task(watch())
    try:
        yield counts
    finally:
        stop.set()
        await watcher
        await connection.close()


async def _measure(
    dsn: str, model: str, known: list[Corpus], queries: Queries, ingest: Corpus, single: int
) -> dict[str, Any]:
    """Every recall mode on ``queries``, then ingest, through a store on ``model``'s space, in
    a settled database."""
    result: dict[str, Any] = {"vacuum_seconds": await _vacuumed(dsn)}
    embedder = _embedder(model, *known)
    store = await MemoryStore.open(_settings(dsn), embedder=embedder)
    try:
        async with _autovacuum_watch(dsn) as autovacuum:
            for mode in MODES:
                latencies, _ = await run_mode(store, queries, mode)
                p50, _, p99 = percentiles(latencies)
                result[mode] = {"p50": p50, "p99": p99}
            await settle(dsn)
            result["ingest"] = await _ingest(store, ingest, single)
        result["autovacuum_busy"] = autovacuum[0] / max(1, autovacuum[1])
        return result
    finally:
        await store.close()
        await embedder.aclose()


async def _move(dsn: str, known: list[Corpus], *, rollback: bool) -> dict[str, float]:
    """Build the second space (what is missing in it) and switch to it, or roll back: vectors
    built, seconds of the build, seconds of the switch (its transaction, the wait for the
    processes' recheck, the graph's rebuild and its VACUUM)."""
    embedder = _embedder(SECOND, *known)
    built, build_seconds = 0, 0.0
    try:
        async with await SpaceMover.open(_settings(dsn), dsn=dsn, embedder=embedder) as mover:
            if not rollback:
                started = time.perf_counter()
                await mover.begin()
                built = await mover.build()
                build_seconds = time.perf_counter() - started
            started = time.perf_counter()
            switched = await mover.switch(rollback=rollback)
            switch_seconds = time.perf_counter() - started
    finally:
        await embedder.aclose()
    return {
        "built": built,
        "build_seconds": build_seconds,
        "moved": switched.moved,
        "switch_seconds": switch_seconds,
    }


def _print(state: str, result: dict[str, Any], first: dict[str, Any]) -> None:
    busy = result["autovacuum_busy"]
    print(
        f"  {state:<16}settled: VACUUM in {result['vacuum_seconds']:.1f} s, autovacuum {busy:.0%}"
    )
    for mode in MODES:
        p50, p99 = result[mode]["p50"], result[mode]["p99"]
        ratio = p50 / first[mode]["p50"]
        print(f"  {state:<16}{mode:<9}p50 {p50:6.2f} ms  p99 {p99:6.2f}  x first {ratio:.2f}")
    for shape, rate in result["ingest"].items():
        ratio = rate / first["ingest"][shape]
        print(f"  {state:<16}remember {shape:<16}{rate:8.0f}/s  x first {ratio:.2f}")


async def run_case(
    dsn: str, name: str, data: Corpus, queries: Queries, single: int, batches: int
) -> dict[str, Any]:
    """Load ``data`` into a fresh database, then measure it in each state of STATES."""
    case_dsn = await fresh_database(dsn, name)
    ingests = [corpus([(f"ingest-{i}", single + 1000 * batches)], seed=100 + i) for i in range(4)]
    known = [data, *ingests]
    loader = _embedder(FIRST, data)
    store = await MemoryStore.open(_settings(case_dsn), embedder=loader)
    try:
        await remember_all(store, data)
        await store.index(rebuild=True)
    finally:
        await store.close()
        await loader.aclose()
    results: dict[str, Any] = {}
    for i, state in enumerate(STATES):
        move: dict[str, float] = {}
        if i:
            move = await _move(case_dsn, known, rollback=state == "rolled back")
            rate = move["built"] / move["build_seconds"] if move["built"] else 0.0
            print(
                f"  {state}: built {move['built']:.0f} vectors in {move['build_seconds']:.1f} s "
                f"({rate:.0f}/s), switched {move['moved']:.0f} in {move['switch_seconds']:.1f} s "
                "(graph rebuilt)"
            )
        model = SECOND if state.startswith("switched") else FIRST
        results[state] = await _measure(case_dsn, model, known, queries, ingests[i], single)
        results[state]["move"] = move
        _print(state, results[state], results[STATES[0]])
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--single", type=int, default=300, help="memories remembered one a call")
    parser.add_argument("--batches", type=int, default=5, help="calls of 1,000 memories")
    arguments = parser.parse_args()
    cases = set(arguments.cases.split(","))
    rows = arguments.rows
    report: dict[str, Any] = {"machine": machine(), "rows": rows}
    print(f"{machine()}; k=10, {arguments.queries} queries per mode\n")
    async with embedded_server() as dsn:
        if "a" in cases:
            print(f"(a) one namespace of {rows}")
            data = corpus([("everything", rows)])
            queries = make_queries(data, None, arguments.queries)
            report["a"] = await run_case(
                dsn, "switch_a", data, queries, arguments.single, arguments.batches
            )
        if "b" in cases:
            print(f"\n(b) 100 namespaces of {rows // 100}, recall inside one")
            data = corpus([(f"agent-{i:03d}", rows // 100) for i in range(100)])
            queries = make_queries(data, None, arguments.queries)
            report["b"] = await run_case(
                dsn, "switch_b", data, queries, arguments.single, arguments.batches
            )
    write_json(OUT / "switch_cost.json", report)


if __name__ == "__main__":
    asyncio.run(main())
