"""What changing the embedding model costs the hot paths: recall and ingest, before and after.

    python -m benchmarks.switch_cost [--cases a,b] [--rows 100000] [--queries 300]
                                     [--single 300] [--batches 5] [--rounds 3]

One process, one embedded PostgreSQL, the synthetic corpus of recall_latency: (a) one namespace
of ``--rows`` (through the HNSW graph), (b) 100 namespaces of ``--rows / 100`` (exact scans).
Each case is measured in four states, in turn: in its first space; after ``pgrecall reembed``
into a second space and ``--switch``; after ``--rollback``; after switching forward again. The
second space holds the same vectors under another model name, so what differs between the
states is the switch's doing (rows rewritten, the previous space's vectors kept in
``space_vectors``, the graph rebuilt, the other indexes compacted unless ``--no-compact``),
not the vectors. In each state: p50/p99 per recall mode (the same queries), the buffers of memories
(heap and indexes) one vector and one keyword recall touch (hit, or read from outside shared
buffers), and ``remember`` of one memory a call and of 1,000 a call into a namespace of that
state's own.

Ratios are to a copy of the database taken in its first space (``CREATE DATABASE ... TEMPLATE``,
the same pages) and measured beside the state, the legs alternated for ``--rounds`` rounds, and
given the same ingest. Measured minutes apart instead, the states' ratios carried the machine's
drift: on an idle machine case (b)'s vector p50 came out 1.10-1.22x after a move in two runs,
while the same states alternated in one process measured 0.94-1.06x (benchmarks/RESULTS.md,
issue 21, session 12). In the first state both legs are the same store: their ratio is the
noise floor.

Each state is measured in settled databases: ``VACUUM (ANALYZE)`` first (a switch rewrites
every row of ``memories`` and inserts and deletes as many in ``space_vectors``), then
``common.settle`` (no autovacuum worker busy, a checkpoint), again before the ingest legs. A
watcher samples ``pg_stat_activity`` every 0.5 s during each state; the share of samples with
an autovacuum worker busy is printed beside its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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
    database_url,
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
# The two legs of each state: the database moved, and its copy kept in the first space.
STATE, COPY = "state", "first space's copy"
WATCH_SECONDS = 0.5
_AUTOVACUUM_BUSY = (
    "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
)
# Buffers of memories (heap and indexes) found in shared buffers and read from outside them.
_BUFFERS = """
    SELECT heap_blks_hit + coalesce(idx_blks_hit, 0) AS hit,
           heap_blks_read + coalesce(idx_blks_read, 0) AS read
    FROM pg_statio_user_tables WHERE relname = 'memories'
"""
# A backend flushes its statistics when idle at most every 10 s (PGSTAT_IDLE_INTERVAL).
STATS_FLUSH_SECONDS = 11.0
WARMUP = 10  # the untimed calls common.timed makes first
# The modes whose buffers are counted: the exact scan, and the statement the moves' half-empty
# indexes cost most (87.4 -> 98.2 buffers, RESULTS.md issue 21 session 12).
BUFFER_MODES = ("vector", "keyword")
COPY_ATTEMPTS = 5


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


async def _buffers(dsn: str) -> tuple[int, int]:
    """Blocks of memories hit in and read into shared buffers so far in ``dsn``'s database (as
    far as its backends have flushed their statistics: see ``STATS_FLUSH_SECONDS``)."""
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(_BUFFERS)
    finally:
        await connection.close()
    assert row is not None
    return int(row["hit"]), int(row["read"])


@dataclasses.dataclass(frozen=True, slots=True)
class Leg:
    """A database measured in a state, and the model of the space active in it."""

    dsn: str
    model: str


async def _measure(
    legs: dict[str, Leg],
    known: list[Corpus],
    queries: Queries,
    ingest: Corpus,
    single: int,
    rounds: int,
    buffers: bool,
) -> dict[str, dict[str, Any]]:
    """Every recall mode on ``queries`` in each leg's database, the legs alternated for
    ``rounds`` rounds (the order rotated each round), then (``buffers``) the buffers of one
    vector pass per leg, then ingest of ``ingest`` into each; in settled databases."""
    results: dict[str, dict[str, Any]] = {
        name: {"vacuum_seconds": await _vacuumed(leg.dsn)} for name, leg in legs.items()
    }
    stores: dict[str, MemoryStore] = {}
    embedders: list[PrecomputedEmbedder] = []
    try:
        for name, leg in legs.items():
            embedders.append(_embedder(leg.model, *known))
            stores[name] = await MemoryStore.open(_settings(leg.dsn), embedder=embedders[-1])
        latencies: dict[str, dict[str, list[float]]] = {
            name: {mode: [] for mode in MODES} for name in legs
        }
        async with _autovacuum_watch(next(iter(legs.values())).dsn) as autovacuum:
            names = list(legs)
            for round_ in range(rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    for mode in MODES:
                        latencies[name][mode] += (await run_mode(stores[name], queries, mode))[0]
            if buffers:  # how many pages of memories a recall touches, from where
                for mode in BUFFER_MODES:
                    await _recall_buffers(legs, stores, queries, results, mode)
            for leg in legs.values():
                await settle(leg.dsn)
            for name in names:
                results[name]["ingest"] = await _ingest(stores[name], ingest, single)
        for name in names:
            for mode in MODES:
                p50, _, p99 = percentiles(latencies[name][mode])
                results[name][mode] = {"p50": p50, "p99": p99}
            results[name]["autovacuum_busy"] = autovacuum[0] / max(1, autovacuum[1])
        return results
    finally:
        for store in stores.values():
            await store.close()
        for embedder in embedders:
            await embedder.aclose()


async def _recall_buffers(
    legs: dict[str, Leg],
    stores: dict[str, MemoryStore],
    queries: Queries,
    results: dict[str, dict[str, Any]],
    mode: str,
) -> None:
    """One pass of ``mode`` per leg: blocks of memories hit and read per recall, into
    ``results``."""
    before = {name: await _buffers(leg.dsn) for name, leg in legs.items()}
    for store in stores.values():
        await run_mode(store, queries, mode)
    await asyncio.sleep(STATS_FLUSH_SECONDS)
    for name, leg in legs.items():
        after, calls = await _buffers(leg.dsn), len(queries.texts) + WARMUP
        results[name][f"{mode}_buffers"] = {
            "hit": (after[0] - before[name][0]) / calls,
            "read": (after[1] - before[name][1]) / calls,
        }


async def _copy(dsn: str, source: str, name: str) -> str:
    """A copy of database ``source`` (its pages as they are) named ``name``; its DSN. Retried
    while an autovacuum worker is still connected to the source."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for _ in range(COPY_ATTEMPTS):
            try:
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
                return database_url(dsn, name)
            except asyncpg.ObjectInUseError:
                await settle(dsn)
        raise RuntimeError(f"database {source} stayed in use: no copy made")
    finally:
        await admin.close()


async def _move(
    dsn: str, known: list[Corpus], *, rollback: bool, compact: bool
) -> dict[str, float]:
    """Build the second space (what is missing in it) and switch to it, or roll back: vectors
    built, seconds of the build, seconds of the switch (its transaction, the wait for the
    processes' recheck, the graph's rebuild and its VACUUM, with ``compact`` the compaction of
    the other indexes), and of the compaction alone (``SpaceMover.switch``'s own, as
    ``reembed --switch`` runs it unless ``--no-compact``)."""
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
            switched = await mover.switch(rollback=rollback, compact_indexes=compact)
            switch_seconds = time.perf_counter() - started
    finally:
        await embedder.aclose()
    compaction = switched.compaction
    return {
        "built": built,
        "build_seconds": build_seconds,
        "moved": switched.moved,
        "switch_seconds": switch_seconds,
        "compact_seconds": compaction.seconds if compaction else 0.0,
        "compacted": len(compaction.rebuilt) if compaction else 0,
    }


def _print(state: str, results: dict[str, dict[str, Any]]) -> None:
    """Each leg of a state, with its ratios to the first space's copy measured beside it."""
    copy = results[COPY]
    for leg in (STATE, COPY):
        result = results[leg]
        label = state if leg == STATE else "  first's copy"
        busy, vacuum = result["autovacuum_busy"], result["vacuum_seconds"]
        print(f"  {label:<16}settled: VACUUM in {vacuum:.1f} s, autovacuum {busy:.0%}")
        for mode in MODES:
            p50, p99 = result[mode]["p50"], result[mode]["p99"]
            ratio = p50 / copy[mode]["p50"]
            print(f"  {label:<16}{mode:<9}p50 {p50:6.2f} ms  p99 {p99:6.2f}  x copy {ratio:.2f}")
        for mode in BUFFER_MODES:
            if f"{mode}_buffers" in result:
                hit, read = result[f"{mode}_buffers"]["hit"], result[f"{mode}_buffers"]["read"]
                print(f"  {label:<16}{mode} buffers a recall: {hit:.1f} hit, {read:.1f} read")
        for shape, rate in result["ingest"].items():
            ratio = rate / copy["ingest"][shape]
            print(f"  {label:<16}remember {shape:<16}{rate:8.0f}/s  x copy {ratio:.2f}")


async def run_case(
    dsn: str,
    name: str,
    data: Corpus,
    queries: Queries,
    single: int,
    batches: int,
    rounds: int,
    buffers: bool,
    compact: bool,
) -> dict[str, Any]:
    """Load ``data`` into a fresh database and keep a copy of it in its first space; then
    measure the database in each state of STATES alternated with the copy."""
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
    await settle(dsn)
    copy = Leg(await _copy(dsn, name, f"{name}_first"), FIRST)
    results: dict[str, Any] = {}
    for i, state in enumerate(STATES):
        move: dict[str, float] = {}
        if i:
            move = await _move(case_dsn, known, rollback=state == "rolled back", compact=compact)
            rate = move["built"] / move["build_seconds"] if move["built"] else 0.0
            compacted = (
                f"; {move['compacted']:.0f} indexes compacted in {move['compact_seconds']:.1f} s"
                if compact
                else ""
            )
            print(
                f"  {state}: built {move['built']:.0f} vectors in {move['build_seconds']:.1f} s "
                f"({rate:.0f}/s), switched {move['moved']:.0f} in {move['switch_seconds']:.1f} s "
                f"(graph rebuilt{compacted})"
            )
        model = SECOND if state.startswith("switched") else FIRST
        legs = {STATE: Leg(case_dsn, model), COPY: copy}
        results[state] = await _measure(legs, known, queries, ingests[i], single, rounds, buffers)
        results[state]["move"] = move
        _print(state, results[state])
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--single", type=int, default=300, help="memories remembered one a call")
    parser.add_argument("--batches", type=int, default=5, help="calls of 1,000 memories")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternated recall legs")
    parser.add_argument(
        "--buffers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count the buffers of a vector and a keyword recall (waits "
        f"{STATS_FLUSH_SECONDS * len(BUFFER_MODES):.0f} s a state)",
    )
    parser.add_argument(
        "--compact",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end each move with the compaction of the indexes, as reembed --switch does "
        "unless --no-compact",
    )
    arguments = parser.parse_args()
    cases = set(arguments.cases.split(","))
    rows = arguments.rows
    report: dict[str, Any] = {"machine": machine(), "rows": rows}
    print(f"{machine()}; k=10, {arguments.queries} queries per mode\n")
    async with embedded_server() as dsn:
        shapes = {
            "a": (f"(a) one namespace of {rows}", [("everything", rows)]),
            "b": (
                f"\n(b) 100 namespaces of {rows // 100}, recall inside one",
                [(f"agent-{i:03d}", rows // 100) for i in range(100)],
            ),
        }
        for case, (title, namespaces) in shapes.items():
            if case not in cases:
                continue
            print(title)
            data = corpus(namespaces)
            queries = make_queries(data, None, arguments.queries)
            report[case] = await run_case(
                dsn,
                f"switch_{case}",
                data,
                queries,
                arguments.single,
                arguments.batches,
                arguments.rounds,
                arguments.buffers,
                arguments.compact,
            )
    write_json(OUT / "switch_cost.json", report)


if __name__ == "__main__":
    asyncio.run(main())
