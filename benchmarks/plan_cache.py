"""Generic plans forced (``db/plan_cache.py``) against PostgreSQL's own choice, on an unmoved
store: what the change costs or saves on the hot paths where nothing tips.

    python -m benchmarks.plan_cache [--cases a,b] [--rows 100000] [--queries 300] [--rounds 3]

One embedded PostgreSQL, switch_cost's cases: (a) one namespace of ``--rows`` (through the
graph: the winners' statement after BM25 scored in Python runs generic, the statements before
it PostgreSQL's choice, so a connection changes mode twice a keyword or hybrid recall), (b) 100
namespaces of ``--rows / 100`` (exact scans, generic throughout). Each case has two stores on
one database: "choice", whose pool has no ``setup`` hook (every
statement left to PostgreSQL, as before session 17), and "generic", pgrecall's pool. Each
query runs on both, back to back, the order flipped from pair to pair (benchmarks/paired.py),
in each mode; then one memory a call into a namespace new to both; then a mixed leg, one
memory remembered and one recall made, in turn, so the generic store's connections change
mode at every step (a ``SET`` each way). Figures: each leg's p50, and the median of the
pairs' ratios (generic / choice) with its bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg

from benchmarks.common import (
    CONTENT_ONLY,
    PrecomputedEmbedder,
    corpus,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    remember_all,
    settle,
)
from benchmarks.paired import paired_ratio
from benchmarks.recall_latency import MODES, make_queries
from pgrecall import MemoryStore, load_settings
from pgrecall.config import Settings
from pgrecall.db.pool import create_pool
from pgrecall.db.vectors import register_vector_codec

CHOICE, GENERIC = "choice", "generic"
WARMUP = 10


async def _store(
    dsn: str, settings: Settings, embedder: PrecomputedEmbedder, leg: str
) -> MemoryStore:
    """A store on ``dsn`` whose pool is pgrecall's (``generic``) or has no setup hook."""
    if leg == GENERIC:
        pool = await create_pool(
            dsn, max_size=settings.pool_max_size, hnsw_ef_search=settings.hnsw_ef_search
        )
    else:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=settings.pool_max_size,
            init=register_vector_codec,
            server_settings={
                "hnsw.ef_search": str(settings.hnsw_ef_search),
                "hnsw.iterative_scan": "relaxed_order",
            },
        )
    resources = AsyncExitStack()
    resources.push_async_callback(pool.close)
    return MemoryStore(settings, pool, dsn, embedder, resources)


Call = Callable[[str, MemoryStore], Awaitable[object]]


async def _paired(
    stores: dict[str, MemoryStore], calls: list[Call], rounds: int, warmup: int = WARMUP
) -> dict[str, object]:
    """Every call on both stores (with its leg's name) back to back, the order flipped from
    pair to pair, after ``warmup`` untimed calls on each."""
    seconds: dict[str, list[float]] = {CHOICE: [], GENERIC: []}
    groups: list[list[float]] = [[] for _ in calls]
    for i in range(min(warmup, len(calls))):
        for name, store in stores.items():
            await calls[i](name, store)
    turn = 0
    for _ in range(rounds):
        for i, call in enumerate(calls):
            took = {}
            order = (CHOICE, GENERIC) if turn % 2 == 0 else (GENERIC, CHOICE)
            turn += 1
            for name in order:
                started = time.perf_counter()
                await call(name, stores[name])
                took[name] = time.perf_counter() - started
                seconds[name].append(took[name])
            groups[i].append(took[GENERIC] / took[CHOICE])
    paired = paired_ratio(groups)
    p50 = {name: percentiles(values)[0] for name, values in seconds.items()}
    return {"p50": p50, "paired": paired}


def _print(label: str, result: dict[str, object]) -> None:
    p50 = result["p50"]
    assert isinstance(p50, dict)
    print(
        f"    {label:<15} p50 {p50[GENERIC]:7.2f} / {p50[CHOICE]:7.2f} ms "
        f"(generic / choice)  paired {result['paired']}"
    )


async def _case(server: str, case: str, arguments: argparse.Namespace) -> None:
    """Both stores on one database of ``case``'s layout, every leg paired."""
    if case == "a":
        layout, label = [("everything", arguments.rows)], f"(a) one namespace of {arguments.rows}"
    else:
        per = arguments.rows // 100
        layout, label = [(f"ns-{n:03d}", per) for n in range(100)], f"(b) 100 namespaces of {per}"
    data = corpus(layout)
    queries = make_queries(data, None, arguments.queries)
    dsn = await fresh_database(server, f"plan_cache_{case}")
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts, data.vectors)
    embedder.learn(queries.texts, queries.vectors)
    settings = load_settings(database_url=dsn, worker=False, auto_migrate=False, **CONTENT_ONLY)
    loader = await MemoryStore.open(settings, embedder=embedder)
    await remember_all(loader, data)
    await loader.index(rebuild=True)
    await loader.close()
    await settle(dsn)
    stores = {leg: await _store(dsn, settings, embedder, leg) for leg in (CHOICE, GENERIC)}
    try:
        print(f"\n{label}, {arguments.queries} queries x {arguments.rounds}")
        for mode in MODES:

            def recall(i: int, mode: str = mode) -> Call:
                return lambda _, store: store.recall(
                    queries.texts[i],
                    namespace=queries.namespaces[i],
                    mode=mode,  # type: ignore[arg-type]
                )

            calls = [recall(i) for i in range(len(queries.texts))]
            _print(mode, await _paired(stores, calls, arguments.rounds))
        singles = [f"a new memory {i} of the single calls" for i in range(arguments.single)]
        embedder.learn(singles, data.vectors[: len(singles)])

        def one(i: int) -> Call:
            # A memory new to its store: each leg writes a namespace of its own.
            return lambda name, store: store.remember(singles[i], namespace=f"singles-{name}")

        calls = [one(i) for i in range(len(singles))]
        _print("one a call", await _paired(stores, calls, 1, warmup=0))

        def mixed(i: int) -> Call:
            async def run(name: str, store: MemoryStore) -> None:
                await store.remember(singles[i], namespace=f"mixed-{name}")
                await store.recall(queries.texts[i], namespace=queries.namespaces[i], mode="hybrid")

            return run

        count = min(len(singles), len(queries.texts))
        calls = [mixed(i) for i in range(count)]
        _print("remember+recall", await _paired(stores, calls, 1, warmup=0))
    finally:
        for store in stores.values():
            await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=300)
    arguments = parser.parse_args()
    cases = arguments.cases.split(",")
    if not set(cases) <= {"a", "b"}:
        parser.error(f"--cases takes a and b, not {arguments.cases!r}")
    print(machine())
    async with embedded_server() as server:
        for case in cases:
            await _case(server, case, arguments)


if __name__ == "__main__":
    asyncio.run(main())
