"""pgrecall on a Citus cluster against plain PostgreSQL, in one run.

For one namespace of each size (``--sizes``, default 1,000 and 100,000) on each engine: the
ingest rate through ``remember`` (precomputed vectors, so the figures are the database's), the
recall p50 of each mode, the shard tasks Citus plans for each statement of a recall
(``EXPLAIN``: ``Task Count``; plain PostgreSQL plans none), and the shards each statement of a
``remember`` reaches (``citus.log_remote_commands``: the shard tables its remote commands name).
Citus is a coordinator and two workers started from ../shared/citus (tests/citus_cluster.py,
the suite's recipe); every node shares this machine's cores, so read the ratios, not the times.
The memories are indexed by their content alone (``CONTENT_ONLY``, as every benchmark with
precomputed vectors: the vectors are the content's); contextual indexing's cost is
benchmarks/context_cost.py's.

    python -m benchmarks.citus [--sizes 1000,100000] [--queries 100] [--engines postgres,citus]
                               [--keep DIR --phase ingest|build|recall]

``--keep DIR`` keeps both servers' data (and the cluster's ports) in DIR, so a size too large
for one run is measured in parts: ``--phase ingest`` (``remember`` alone, both engines in one
run, and the routing sample), ``--phase build`` (the keyword postings and the graph: at 100k
they took longer than the ingest itself, so the ingest rate is printed before they start, each
engine in a run of its own if need be), then ``--phase recall`` for both engines in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import warnings
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from tests.citus_cluster import CitusCluster, absent_reason

from benchmarks.common import (
    CONTENT_ONLY,
    Corpus,
    PrecomputedEmbedder,
    corpus,
    database_url,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    remember_all,
    timed,
)
from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.db import migrate
from pgrecall.db.vectors import register_vector_codec

DIMENSIONS = 384
MODES = ("vector", "keyword", "hybrid")
QUERY_POOL = 1000  # queries drawn once, so every run of a size asks the same ones
_TASK_COUNT = re.compile(r"Task Count: (\d+)")
_SHARD_TABLE = re.compile(r"\bmemories_(\d+)\b")
ROUTING_SAMPLE = 100  # memories of the routing sample's remember calls


async def _open(
    dsn: str,
    embedder: PrecomputedEmbedder,
    logger: Callable[[Any], None],
    remote: list[str] | None = None,
) -> MemoryStore:
    """A store on a one-connection pool that tells ``logger`` each statement it ran; with
    ``remote`` (Citus only), the commands Citus sends to the shards go there, as notices, before
    their statement's ``logger`` call."""
    settings = load_settings(worker=False, auto_migrate=False, **CONTENT_ONLY)
    server_settings = {
        "hnsw.ef_search": str(settings.hnsw_ef_search),
        "hnsw.iterative_scan": "relaxed_order",
    }
    if remote is not None:
        server_settings["citus.log_remote_commands"] = "on"

    async def listen(connection: Any) -> None:  # asyncpg drops listeners at each release
        if remote is not None:
            connection.add_log_listener(lambda _, message: remote.append(str(message)))

    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=1,
        init=register_vector_codec,
        setup=listen,
        server_settings=server_settings,
    )
    async with pool.acquire() as connection:
        connection.add_query_logger(logger)
    resources = AsyncExitStack()
    resources.push_async_callback(pool.close)
    return MemoryStore(settings, pool, dsn, embedder, resources)


async def _tasks(dsn: str, sent: list[Any]) -> str:
    """Task counts Citus plans for each statement touching memories ("-": none planned)."""
    connection = await asyncpg.connect(dsn)
    try:
        await register_vector_codec(connection)
        counts = []
        for record in sent:
            if "memories" not in record.query:
                continue
            plan = await connection.fetch(f"EXPLAIN (COSTS OFF) {record.query}", *record.args)
            found = _TASK_COUNT.findall("\n".join(row[0] for row in plan))
            counts.append("+".join(found) or "-")
        return ",".join(counts)
    finally:
        await connection.close()


async def ingest_routing(dsn: str) -> str:
    """The shards each statement of ``remember`` on memories reaches on Citus, for new memories
    of one namespace and for the same again with other metadata (the insert and the update
    paths): "statement: shards reached", in order. A namespace of its own, so the measured ones
    are left as they were."""
    remote: list[str] = []
    reached: list[str] = []

    def statement_done(record: Any) -> None:
        shards = {int(shard) for command in remote for shard in _SHARD_TABLE.findall(command)}
        remote.clear()
        if "memories" in record.query:
            reached.append(f"{' '.join(record.query.split()[:2])}: {len(shards)}")

    texts = [f"routing sample {n}" for n in range(ROUTING_SAMPLE)]
    embedder = PrecomputedEmbedder()
    embedder.learn(texts, np.eye(len(texts), DIMENSIONS, dtype=np.float32))
    calls = []
    with warnings.catch_warnings():  # the listener stays on the pool's one connection
        warnings.filterwarnings("ignore", ".*active log listener")
        store = await _open(dsn, embedder, statement_done, remote)
        try:
            for call, metadata in (("new", {"call": 1}), ("again", {"call": 2})):
                reached.clear()
                items = [MemoryInput(text, metadata=metadata) for text in texts]
                await store.remember(items, namespace="routing")
                calls.append(f"{call} [{', '.join(reached)}]")
        finally:
            await store.close()
    return "; ".join(calls)


def _data(size: int) -> tuple[Corpus, list[str]]:
    """One namespace of ``size`` and one of 200 beside it (the same on every run), and the
    texts of the queries (each has its vector: the embedder learns the corpus)."""
    data = corpus([("large", size), ("decoy", 200)], uniform=True)
    rng = np.random.default_rng(3)
    picks = rng.choice(np.flatnonzero(np.array(data.namespaces) == "large"), QUERY_POOL)
    return data, [data.texts[i] for i in picks]


def _embedder(data: Corpus) -> PrecomputedEmbedder:
    embedder = PrecomputedEmbedder()
    embedder.learn(data.texts, data.vectors)
    return embedder


async def ingest(dsn: str, data: Corpus) -> dict[str, float]:
    """Remember every memory: the ingest rate (printed at once: a build may outlast a slot)."""
    store = await _open(dsn, _embedder(data), lambda _: None)
    try:
        seconds = await remember_all(store, data)
        print(f"    {len(data.texts) / seconds:.0f} memories/s in {seconds:.1f} s", flush=True)
        return {"ingest_per_s": len(data.texts) / seconds}
    finally:
        await store.close()


async def build(dsn: str, data: Corpus) -> dict[str, float]:
    """The large namespace's keyword postings, then its graph: the seconds of each."""
    store = await _open(dsn, _embedder(data), lambda _: None)
    try:
        started = time.perf_counter()
        await store.postings.catch_up()
        postings = time.perf_counter() - started
        print(f"    postings {postings:.1f} s", flush=True)
        started = time.perf_counter()
        await store.index(rebuild=True)
        return {"postings_s": postings, "index_s": time.perf_counter() - started}
    finally:
        await store.close()


async def recall(dsn: str, data: Corpus, texts: list[str]) -> dict[str, Any]:
    """p50 of each mode over ``texts`` in the large namespace, and the tasks of each statement."""
    sent: list[Any] = []
    store = await _open(dsn, _embedder(data), sent.append)
    try:
        result: dict[str, Any] = {}
        for mode in MODES:
            calls = [
                lambda text=text, mode=mode: store.recall(text, namespace="large", mode=mode)
                for text in texts
            ]
            result[mode] = percentiles(await timed(calls))[0]
            sent.clear()
            store._sizes.forget(["large"])  # the size count is part of a first recall
            await store.recall(texts[0], namespace="large", mode=mode)
            result[f"{mode}_tasks"] = await _tasks(dsn, sent)
        return result
    finally:
        await store.close()


def _print(size: int, figures: dict[str, dict[str, Any]]) -> None:
    for engine, row in figures.items():
        line = f"  {engine:9}"
        if "ingest_per_s" in row:
            line += f" ingest {row['ingest_per_s']:7.0f}/s"
        if "index_s" in row:
            line += f" (postings {row['postings_s']:.0f} s, graph {row['index_s']:.0f} s)"
        if "ingest_routing" in row:
            line += f"\n            remember's statements, shards reached: {row['ingest_routing']}"
        if "vector" in row:
            line += "  " + "  ".join(f"{m} p50 {row[m]:7.2f} ms" for m in MODES)
            line += "  tasks " + "  ".join(f"{m} {row[m + '_tasks']}" for m in MODES)
        print(line)
    if len(figures) == 2:
        citus, plain = figures["citus"], figures["postgres"]
        ratios = [f"{m} p50 {citus[m] / plain[m]:.2f}x" for m in MODES if m in plain]
        if "ingest_per_s" in plain:
            ratios.insert(0, f"ingest {citus['ingest_per_s'] / plain['ingest_per_s']:.2f}x")
        print(f"  citus / postgres: {'  '.join(ratios)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--engines", default="postgres,citus")
    parser.add_argument("--phase", choices=("all", "ingest", "build", "recall"), default="all")
    parser.add_argument("--keep", type=Path, help="directory keeping both servers between runs")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    engines = args.engines.split(",")
    if args.phase != "all" and args.keep is None:
        raise SystemExit("--phase ingest, build or recall needs --keep DIRECTORY")
    if args.queries > QUERY_POOL:
        raise SystemExit(f"--queries is at most {QUERY_POOL}")
    reason = absent_reason()
    if reason:
        raise SystemExit(reason)
    print(f"{machine()}; {args.queries} queries per mode; phase {args.phase}")
    cluster = CitusCluster(keep=args.keep / "citus" if args.keep else None)
    await asyncio.to_thread(cluster.start)
    try:
        await cluster.tune_for_tests()
        plain_dir = args.keep / "postgres" if args.keep else None
        async with embedded_server(plain_dir) as server:
            for size in sizes:
                print(f"\none namespace of {size} (and one of 200 beside it)")
                data, texts = _data(size)
                name = f"bench_citus_{size}"
                figures: dict[str, dict[str, Any]] = {}
                for engine in engines:
                    print(f"  {engine}", flush=True)
                    if args.phase in ("build", "recall"):
                        dsn = cluster.dsn(name) if engine == "citus" else database_url(server, name)
                    elif engine == "citus":
                        dsn = await cluster.create_database(name)
                        await migrate.upgrade(dsn, DIMENSIONS)
                    else:
                        dsn = await fresh_database(server, name)
                    row = figures.setdefault(engine, {})
                    if args.phase in ("all", "ingest"):
                        row.update(await ingest(dsn, data))
                        if engine == "citus":
                            row["ingest_routing"] = await ingest_routing(dsn)
                    if args.phase in ("all", "build"):
                        row.update(await build(dsn, data))
                    if args.phase in ("all", "recall"):
                        row.update(await recall(dsn, data, texts[: args.queries]))
                _print(size, figures)
    finally:
        started = time.perf_counter()
        await asyncio.to_thread(cluster.stop)
        print(f"\ncluster stopped in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
