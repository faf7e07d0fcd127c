"""What changing the embedding model costs the hot paths: recall and ingest, before and after.

    python -m benchmarks.switch_cost [--cases a,b] [--rows 100000] [--queries 300]
                                     [--single 300] [--batches 30] [--rounds 3]
                                     [--statistics N] [--states 4]

One process, one embedded PostgreSQL, the synthetic corpus of recall_latency: (a) one namespace
of ``--rows`` (through the HNSW graph), (b) 100 namespaces of ``--rows / 100`` (exact scans).
Each case is measured in four states, in turn: in its first space; after ``pgrecall reembed``
into a second space and ``--switch``; after ``--rollback``; after switching forward again. The
second space holds the same vectors under another model name, so what differs between the
states is the switch's doing (rows rewritten, the previous space's vectors kept in
``space_vectors``, the graph rebuilt, the other indexes compacted unless ``--no-compact``),
not the vectors.

Each state is measured beside a copy of the database taken in its first space (``CREATE
DATABASE ... TEMPLATE``, the same pages), call by call: each query runs on the state and then
on the copy, or the other way round (the order flipped from query to query and round to
round), and each ``remember`` call (one memory a call, then 1,000 a call, into a namespace new
to both) likewise. A cell's figure is the median of its pairs' ratios (state's time / copy's;
above 1 is slower) with a bootstrap 95% interval over queries (benchmarks/paired.py), and the
verdict against issue 21's 10%: within, beyond, or unresolved where the interval straddles
1.10. Beside it: each leg's p50 and the ratio of the p50s, the CPU its backends spent a call
(``/proc/<pid>/schedstat``) and their ratio, and for ``remember`` the WAL bytes a call. Measured
leg by leg (each leg a pass of 300 queries or calls), the first state's A/A spread 0.83-1.17 for
recall p50 and up to 1.58 for the ingest legs over three idle runs (RESULTS.md, issue 21, session
14): too wide to resolve 10%.

Each state is measured with both legs caught up as a worker would leave them (the ingest
namespace of the state before, 30,300 memories, taken into the graph; a move's rebuild does
that on the state's leg) and in settled databases: ``VACUUM (ANALYZE)`` first (a switch rewrites
every row of ``memories`` and inserts and deletes as many in ``space_vectors``), at
``--statistics`` if given, then ``common.settle`` (no autovacuum worker busy, a checkpoint),
again before the ingest legs. A watcher samples ``pg_stat_activity`` every 0.5 s during each
state; the share of samples with an autovacuum worker busy is printed beside its figures. After
the single calls, the heap pages their rows landed on in each leg are printed (a move leaves
the heap half empty, and single inserts go where the free space map sends them).
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
from benchmarks.paired import backends_cpu, cpu_spent, paired_ratio
from benchmarks.recall_latency import MODES, Queries, make_queries, run_mode
from pgrecall import MemoryInput, MemoryStore, load_settings
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
# The two shapes of ingest measured: one memory a call, and 1,000 a call.
ONE, THOUSAND = "one_a_call", "thousand_a_call"
_WAL_POSITION = "SELECT pg_current_wal_insert_lsn()"
_WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)::float8"
# Where a namespace's rows lie in the heap: the check of the guess that after a move single
# inserts land on pages the free space map hands out across the table (RESULTS.md, issue 21,
# session 14) instead of the table's end.
_LANDING = """
    SELECT count(DISTINCT (ctid::text::point)[0])::int AS pages,
           min((ctid::text::point)[0])::int AS first_page,
           max((ctid::text::point)[0])::int AS last_page,
           (pg_relation_size('memories') / current_setting('block_size')::int)::int AS heap_pages
    FROM memories WHERE namespace = $1
"""


def _settings(dsn: str) -> Settings:
    return load_settings(database_url=dsn, worker=False, auto_migrate=False, **CONTENT_ONLY)


def _embedder(model: str, *corpora: Corpus) -> PrecomputedEmbedder:
    embedder = PrecomputedEmbedder(model)
    for data in corpora:
        embedder.learn(data.texts, data.vectors)
    return embedder


async def _caught_up(leg: Leg, known: list[Corpus]) -> None:
    """``leg`` as a worker would have left it (the benchmark runs none): the namespaces the
    previous state's ingest legs made large (30,300 memories) in the graph, with their postings
    and vector copies. A move does that on its own leg (its rebuild takes in every large
    namespace); without this the state's graph held an ingest namespace the copy's did not, and
    hybrid recall, whose vector ranking reads 100 rows of the namespace through the shared
    graph, ran 1.12-1.27x the copy's in case (a) (benchmarks/RESULTS.md, issue 21, session 18)."""
    embedder = _embedder(leg.model, *known)
    store = await MemoryStore.open(_settings(leg.dsn), embedder=embedder)
    try:
        await store.index()
    finally:
        await store.close()
        await embedder.aclose()


async def _vacuumed(dsn: str, statistics: int | None) -> float:
    """``VACUUM (ANALYZE)`` of every table of ``dsn``'s database (with ``statistics``, at that
    statistics target), then ``settle``; seconds."""
    started = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        if statistics is not None:
            await connection.execute(f"SET default_statistics_target = {int(statistics)}")
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
class Options:
    """How a case is measured: memories remembered one a call, calls of 1,000, rounds of the
    recall pairs, whether buffers are counted, whether moves compact, the statistics target of
    each state's ANALYZE (None: the server's), and how many of STATES are measured."""

    single: int
    batches: int
    rounds: int
    buffers: bool
    compact: bool
    statistics: int | None
    states: int


@dataclasses.dataclass(frozen=True, slots=True)
class Leg:
    """A database measured in a state: its DSN, its name, and the model of its active space."""

    dsn: str
    database: str
    model: str


@dataclasses.dataclass(slots=True)
class Pairs:
    """The calls of one cell on both legs: each leg's seconds a call and CPU seconds of its
    backends in all, and the ratios (state's time / copy's) grouped by query or call."""

    seconds: dict[str, list[float]]
    cpu: dict[str, float]
    groups: list[list[float]]

    @classmethod
    def empty(cls, groups: int) -> Pairs:
        return cls({STATE: [], COPY: []}, {STATE: 0.0, COPY: 0.0}, [[] for _ in range(groups)])

    def summary(self) -> dict[str, Any]:
        """p50/p99 (ms) and CPU a call (ms) per leg, the paired ratio, the CPU ratio."""
        legs: dict[str, Any] = {}
        for name, seconds in self.seconds.items():
            p50, _, p99 = percentiles(seconds)
            legs[name] = {"p50": p50, "p99": p99, "cpu": self.cpu[name] / len(seconds) * 1000}
        paired = paired_ratio(self.groups)
        return {
            "legs": legs,
            "paired": dataclasses.asdict(paired) | {"verdict": paired.verdict},
            "p50_ratio": legs[STATE]["p50"] / legs[COPY]["p50"],
            "cpu_ratio": self.cpu[STATE] / self.cpu[COPY],
        }


def _order(turn: int) -> tuple[str, str]:
    """Which leg goes first at ``turn``: the state and the copy take turns."""
    return (STATE, COPY) if turn % 2 == 0 else (COPY, STATE)


async def _paired_recall(
    admin: asyncpg.Connection,
    legs: dict[str, Leg],
    stores: dict[str, MemoryStore],
    queries: Queries,
    mode: str,
    rounds: int,
) -> Pairs:
    """Each query in ``mode`` on both legs back to back, the order flipped from query to query
    and from round to round, after WARMUP untimed calls on each."""
    for store in stores.values():
        embedder = store.embedder
        assert isinstance(embedder, PrecomputedEmbedder)
        embedder.learn(queries.texts, queries.vectors)

    async def recall(name: str, i: int) -> float:
        started = time.perf_counter()
        await stores[name].recall(
            queries.texts[i],
            namespace=queries.namespaces[i],
            mode=mode,  # type: ignore[arg-type]
        )
        return time.perf_counter() - started

    for i in range(WARMUP):
        for name in legs:
            await recall(name, i)
    pairs = Pairs.empty(len(queries.texts))
    before = {name: await backends_cpu(admin, leg.database) for name, leg in legs.items()}
    for round_ in range(rounds):
        for i in range(len(queries.texts)):
            took = {name: await recall(name, i) for name in _order(round_ + i)}
            for name, seconds in took.items():
                pairs.seconds[name].append(seconds)
            pairs.groups[i].append(took[STATE] / took[COPY])
    for name, leg in legs.items():
        pairs.cpu[name] = cpu_spent(before[name], await backends_cpu(admin, leg.database))
    return pairs


async def _paired_ingest(
    admin: asyncpg.Connection,
    legs: dict[str, Leg],
    stores: dict[str, MemoryStore],
    calls: list[list[MemoryInput]],
) -> tuple[Pairs, dict[str, float]]:
    """Each call of ``calls`` on both legs back to back (the same memories into each, a
    namespace new to both), the order flipped from call to call; and the WAL bytes each leg
    wrote a call (the server's insert position read around each call, nothing else writing)."""
    pairs = Pairs.empty(len(calls))
    wal = {STATE: 0.0, COPY: 0.0}
    before = {name: await backends_cpu(admin, leg.database) for name, leg in legs.items()}
    for turn, items in enumerate(calls):
        took: dict[str, float] = {}
        for name in _order(turn):
            position = await admin.fetchval(_WAL_POSITION)
            started = time.perf_counter()
            await stores[name].remember(items)
            took[name] = time.perf_counter() - started
            wal[name] += await admin.fetchval(_WAL_SINCE, position)
        for name, seconds in took.items():
            pairs.seconds[name].append(seconds)
        pairs.groups[turn].append(took[STATE] / took[COPY])
    for name, leg in legs.items():
        pairs.cpu[name] = cpu_spent(before[name], await backends_cpu(admin, leg.database))
    return pairs, {name: bytes_ / len(calls) for name, bytes_ in wal.items()}


async def _landing(leg: Leg, namespace: str) -> dict[str, int]:
    """Where ``namespace``'s rows lie in the heap of memories: distinct pages, the first and
    last of them, and the heap's pages in all."""
    connection = await asyncpg.connect(leg.dsn)
    try:
        row = await connection.fetchrow(_LANDING, namespace)
    finally:
        await connection.close()
    assert row is not None
    return dict(row)


def _calls(data: Corpus, start: int, stop: int, per_call: int) -> list[list[MemoryInput]]:
    """``data``'s memories ``start`` to ``stop``, ``per_call`` a call."""
    return [
        [
            MemoryInput(data.texts[i], metadata=data.metadata[i], namespace=data.namespaces[i])
            for i in range(first, min(first + per_call, stop))
        ]
        for first in range(start, stop, per_call)
    ]


async def _measure(
    dsn: str,
    legs: dict[str, Leg],
    known: list[Corpus],
    queries: Queries,
    ingest: Corpus,
    options: Options,
) -> dict[str, Any]:
    """Every recall mode on ``queries``, each query on both legs back to back for the options'
    rounds, then (``buffers``) the buffers of one vector and keyword pass per leg, then
    ``remember`` of ``ingest`` into both, call by call (``single`` one a call, then 1,000 a
    call); in settled databases."""
    for leg in legs.values():
        await _caught_up(leg, known)
    results: dict[str, Any] = {
        "vacuum_seconds": {
            name: await _vacuumed(leg.dsn, options.statistics) for name, leg in legs.items()
        }
    }
    stores: dict[str, MemoryStore] = {}
    embedders: list[PrecomputedEmbedder] = []
    admin = await asyncpg.connect(dsn)
    try:
        for name, leg in legs.items():
            embedders.append(_embedder(leg.model, *known))
            stores[name] = await MemoryStore.open(_settings(leg.dsn), embedder=embedders[-1])
        async with _autovacuum_watch(legs[STATE].dsn) as autovacuum:
            for mode in MODES:
                pairs = await _paired_recall(admin, legs, stores, queries, mode, options.rounds)
                results[mode] = pairs.summary()
            if options.buffers:  # how many pages of memories a recall touches, from where
                for mode in BUFFER_MODES:
                    await _recall_buffers(legs, stores, queries, results, mode)
            for leg in legs.values():
                await settle(leg.dsn)
            total = len(ingest.texts)
            for shape, (start, stop, per_call) in {
                ONE: (0, options.single, 1),
                THOUSAND: (options.single, total, 1000),
            }.items():
                pairs, wal = await _paired_ingest(
                    admin, legs, stores, _calls(ingest, start, stop, per_call)
                )
                results[shape] = pairs.summary() | {"wal": wal}
                if shape == ONE:
                    namespace = ingest.namespaces[0]
                    results["landing"] = {
                        name: await _landing(leg, namespace) for name, leg in legs.items()
                    }
        results["autovacuum_busy"] = autovacuum[0] / max(1, autovacuum[1])
        return results
    finally:
        await admin.close()
        for store in stores.values():
            await store.close()
        for embedder in embedders:
            await embedder.aclose()


async def _recall_buffers(
    legs: dict[str, Leg],
    stores: dict[str, MemoryStore],
    queries: Queries,
    results: dict[str, Any],
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
        results.setdefault(f"{mode}_buffers", {})[name] = {
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
        "heap_before": switched.heap_pages[0] if switched.heap_pages else 0,
        "heap_after": switched.heap_pages[1] if switched.heap_pages else 0,
    }


def _print(state: str, results: dict[str, Any]) -> None:
    """A state's cells: each leg's p50 (or seconds a call) and CPU a call, the paired median
    ratio state / copy with its interval and verdict, the p50 and CPU ratios beside it."""
    busy, vacuum = results["autovacuum_busy"], results["vacuum_seconds"]
    print(
        f"  {state}: VACUUM in {vacuum[STATE]:.1f} / {vacuum[COPY]:.1f} s (state / copy), "
        f"autovacuum busy {busy:.0%}"
    )
    for cell in (*MODES, ONE, THOUSAND):
        result = results[cell]
        legs, paired = result["legs"], result["paired"]
        interval = f"{paired['median']:.3f} [{paired['low']:.3f}, {paired['high']:.3f}]"
        wal = result.get("wal")
        written = f"  WAL {wal[STATE]:,.0f} / {wal[COPY]:,.0f} B a call" if wal else ""
        print(
            f"    {cell:<16}p50 {legs[STATE]['p50']:7.2f} / {legs[COPY]['p50']:7.2f} ms "
            f"(x {result['p50_ratio']:.2f})  CPU {legs[STATE]['cpu']:6.2f} / "
            f"{legs[COPY]['cpu']:6.2f} ms (x {result['cpu_ratio']:.3f})  paired {interval} "
            f"{paired['verdict']}{written}"
        )
    for mode in BUFFER_MODES:
        if f"{mode}_buffers" in results:
            counts = results[f"{mode}_buffers"]
            print(
                f"    {mode} buffers a recall, hit: {counts[STATE]['hit']:.1f} / "
                f"{counts[COPY]['hit']:.1f}, read: {counts[STATE]['read']:.1f} / "
                f"{counts[COPY]['read']:.1f}"
            )
    landing = results["landing"]
    print(
        "    one a call landed on (state / copy): "
        + " / ".join(
            f"{landing[leg]['pages']} pages {landing[leg]['first_page']}-"
            f"{landing[leg]['last_page']} of {landing[leg]['heap_pages']}"
            for leg in (STATE, COPY)
        )
    )


async def run_case(
    dsn: str,
    name: str,
    data: Corpus,
    queries: Queries,
    options: Options,
) -> dict[str, Any]:
    """Load ``data`` into a fresh database and keep a copy of it in its first space; then
    measure the database in each state of STATES (the first ``options.states``) beside the
    copy."""
    case_dsn = await fresh_database(dsn, name)
    size = options.single + 1000 * options.batches
    ingests = [corpus([(f"ingest-{i}", size)], seed=100 + i) for i in range(len(STATES))]
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
    copy = Leg(await _copy(dsn, name, f"{name}_first"), f"{name}_first", FIRST)
    results: dict[str, Any] = {}
    for i, state in enumerate(STATES[: options.states]):
        move: dict[str, float] = {}
        if i:
            rollback, compact = state == "rolled back", options.compact
            move = await _move(case_dsn, known, rollback=rollback, compact=compact)
            rate = move["built"] / move["build_seconds"] if move["built"] else 0.0
            compacted = (
                f"; {move['compacted']:.0f} indexes compacted in {move['compact_seconds']:.1f} s"
                if compact
                else ""
            )
            print(
                f"  {state}: built {move['built']:.0f} vectors in {move['build_seconds']:.1f} s "
                f"({rate:.0f}/s), switched {move['moved']:.0f} in {move['switch_seconds']:.1f} s "
                f"(graph rebuilt{compacted}); the heap {move['heap_before']:,.0f} pages before "
                f"the move, {move['heap_after']:,.0f} after"
            )
        model = SECOND if state.startswith("switched") else FIRST
        legs = {STATE: Leg(case_dsn, name, model), COPY: copy}
        results[state] = await _measure(dsn, legs, known, queries, ingests[i], options)
        results[state]["move"] = move
        _print(state, results[state])
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--single", type=int, default=300, help="memories remembered one a call")
    parser.add_argument("--batches", type=int, default=30, help="calls of 1,000 memories")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the recall pairs")
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
    parser.add_argument(
        "--statistics",
        type=int,
        default=None,
        help="the statistics target of each state's ANALYZE (default: the server's, 100)",
    )
    parser.add_argument(
        "--states", type=int, default=len(STATES), help="measure the first N states only"
    )
    arguments = parser.parse_args()
    options = Options(
        arguments.single,
        arguments.batches,
        arguments.rounds,
        arguments.buffers,
        arguments.compact,
        arguments.statistics,
        arguments.states,
    )
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
                options,
            )
    write_json(OUT / "switch_cost.json", report)


if __name__ == "__main__":
    asyncio.run(main())
