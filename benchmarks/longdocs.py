"""Recall on long documents: SciFact in one namespace and a synthetic namespace of long ones.

    python -m benchmarks.longdocs [--size 100000] [--queries N] [--no-http] [--no-synthetic]
                                  [--split] [--against KEY=VALUE]

SciFact (../shared/eval/scifact): the 5,183 abstracts (~215 words) in one namespace, every test
claim in vector, keyword and hybrid mode, p50 and p99, in-process (``MemoryStore.recall``) and
over HTTP with one client (``create_app`` under uvicorn in a child process, the same settings),
with hit@10 and nDCG@10 from the eval folder's score.py. The local model embeds the abstracts
and claims once (cached in ``out/``); the stores then answer from those vectors
(``PrecomputedEmbedder``), so the figures are pgrecall's own, not the model's.

Keyword postings (issue 25): large namespaces' BM25 reads ``memory_terms``, which the worker
fills in the background; both corpora are moved into it after writing (``MemoryStore.index``).
Vector copies (issue 25): the exact scan of a large namespace reads ``memory_vectors``, which
the worker fills in the background, copied with the postings. ``--plans`` also measures each
lever against its absence in-process (a second store whose threshold no namespace reaches):
keyword and hybrid with the scan of every matching tsvector instead of the postings, vector and
hybrid with the scan of the memories' rows instead of the copies, alternated query by query:
p50 of each, the ratio, and how many top-10 lists are identical. ``--split`` measures SciFact's
hybrid recall also with its two rankings in one statement (``PGRECALL_HYBRID_SPLIT`` off, in
process and over HTTP through the lean client), taking turns with the default's legs, which run
them at once on two connections (recall/split.py). ``--against KEY=VALUE`` (e.g.
``keyword_scoring=sql``) measures keyword and hybrid recall, SciFact's and the synthetic
namespace's, also with that setting changed (a second store and a second server on the same
database, `` alt`` legs), taking turns with the default's, in process and over HTTP; on
the synthetic namespace it also prints how many postings a query reads.
``--random-vectors`` skips the
model (seeded vectors): timing only, vector and hybrid quality then mean nothing.

Synthetic: ``--size`` documents of ``LONG_WORDS`` Zipf words each in one namespace, above the
exact-scan threshold at the default size (so through the graph), queries of a few of a
document's words with a vector near it; vector recall@10 against the exact top 10.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import multiprocessing
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import psutil

from benchmarks.common import (
    CONTENT_ONLY,
    OUT,
    Corpus,
    PrecomputedEmbedder,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    sentences,
    unit_vectors,
)
from benchmarks.cpu import OTHER, CpuMeter
from benchmarks.http_load import postmaster
from benchmarks.lean_http import Client, HttpxClient, LeanConnection
from benchmarks.recall_latency import make_queries, recall_at_10
from benchmarks.scifact import _load, _score_module
from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.db.params import SqlParams
from pgrecall.http.serving import HTTP_PARSER
from pgrecall.recall import bm25

NAMESPACE = "scifact"
LONG_NAMESPACE = "long"
MODES = ("vector", "keyword", "hybrid")
# What a warm-up waits for the caches of a recall's namespace to load (recall/keyword_cache.py):
# SciFact's postings load in ~1 s; the synthetic namespace's 19.2 million, in three processes at
# once, took more than 60 s (the first keyword recalls measured ran without it).
CACHE_LOAD_SECONDS = 3.0
SYNTHETIC_CACHE_LOAD_SECONDS = 180.0
# How ``pgrecall serve`` runs uvicorn (http/serving.py): the servers measured run so.
SERVE: dict[str, Any] = {"loop": "asyncio", "http": HTTP_PARSER}
LONG_WORDS = 200  # words of a synthetic document: SciFact's abstracts average ~215
WARMUP = 10
Taught = list[tuple[list[str], np.ndarray]]  # texts, and the vectors the embedder answers


def _scifact_cache_path() -> Path:
    from pgrecall.embedding.backends import LOCAL_EMBEDDER_VERSION

    return OUT / f"scifact-vectors-{LOCAL_EMBEDDER_VERSION.replace('==', '-')}.npz"


def scifact_cache() -> tuple[np.ndarray, np.ndarray] | None:
    """The local model's vectors of SciFact's abstracts and test claims, if cached."""
    cache = _scifact_cache_path()
    if not cache.exists():
        return None
    stored = np.load(cache)
    return stored["documents"], stored["queries"]


async def scifact_vectors(abstracts: list[str], claims: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The local model's vectors of the abstracts (document prefix) and the test claims (query
    prefix): computed once (minutes of CPU), then read from a cache named for the model."""
    cached = scifact_cache()
    if cached is not None and (len(cached[0]), len(cached[1])) == (len(abstracts), len(claims)):
        return cached
    from pgrecall.embedding.local import LocalEmbedder
    from pgrecall.embedding.space import configured_space

    async def embed() -> tuple[list[list[float]], list[list[float]]]:
        embedder = LocalEmbedder(configured_space(load_settings(embedder="local")))
        try:
            documents = (await embedder.embed_documents(abstracts)).vectors
            queries = (await embedder.embed_queries(claims)).vectors
            return documents, queries
        finally:
            await embedder.aclose()

    print("embedding the SciFact abstracts and claims once (minutes)", flush=True)
    documents, queries = await embed()
    result = np.asarray(documents, dtype=np.float32), np.asarray(queries, dtype=np.float32)
    cache = _scifact_cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, documents=result[0], queries=result[1])
    return result


def _settings(dsn: str, **overrides: Any) -> Any:
    return load_settings(
        database_url=dsn, worker=False, auto_migrate=False, **CONTENT_ONLY, **overrides
    )


async def _open(dsn: str, taught: Taught, **overrides: Any) -> MemoryStore:
    embedder = PrecomputedEmbedder()
    for texts, vectors in taught:
        embedder.learn(texts, vectors)
    return await MemoryStore.open(_settings(dsn, **overrides), embedder=embedder)


async def move_postings(store: MemoryStore, database: str) -> float:
    """Move the namespace's postings and copy its vectors now, as the worker would, then
    analyze; seconds taken."""
    started = time.perf_counter()
    await store.postings.catch_up()
    await store.copies.catch_up()
    connection = await asyncpg.connect(database)
    try:
        for table in ("memory_terms", "memory_vectors", "memories"):
            await connection.execute(f"VACUUM ANALYZE {table}")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def compare_plans(
    lever: str,
    stores: tuple[MemoryStore, MemoryStore],
    queries: list[str],
    namespace: str,
    modes: tuple[str, ...],
) -> None:
    """Recall in-process with the ``lever`` (``stores[0]``) and without it (``stores[1]``, the
    same database), alternated query by query (``measure``): p50 of each, the ratio, and how
    many top-10 lists are identical."""
    plans = {lever: in_process(stores[0], "content"), "without": in_process(stores[1], "content")}
    for mode in modes:
        measured = await measure(plans, queries, namespace, mode)
        lists = [found for _, found in measured.values()]
        same = sum(ours == theirs for ours, theirs in zip(*lists, strict=True))
        p50 = {name: timing[0] for name, (timing, _) in measured.items()}
        print(
            f"  {mode:<8} without p50 {p50['without']:7.2f} ms  {lever} p50 {p50[lever]:7.2f} ms"
            f"  {p50['without'] / p50[lever]:4.2f}x faster  identical top-10 "
            f"{same}/{len(queries)}  ({_load_average()})",
            flush=True,
        )


# Each lever alone: the settings of a store with it (beside the defaults) and of one without it
# (no namespace reaches the threshold, or the cache off), and the modes whose statements it
# changes. The copies and the postings are measured without the caches of them, which read them.
LEVERS: dict[str, tuple[dict[str, int], dict[str, int], tuple[str, ...]]] = {
    "postings": (
        {"keyword_cache_mb": 0},
        {"keyword_postings_min_rows": 10**9},
        ("keyword", "hybrid"),
    ),
    "copies": ({"vector_cache_mb": 0}, {"vector_copy_min_rows": 10**9}, ("vector", "hybrid")),
    "cache": ({}, {"vector_cache_mb": 0}, ("vector", "hybrid")),
    "postings-cache": ({}, {"keyword_cache_mb": 0}, ("keyword", "hybrid")),
}


async def _compare_levers(
    store: MemoryStore, database: str, taught: Taught, queries: list[str], namespace: str
) -> None:
    """``compare_plans`` for each of ``LEVERS``: a store with the lever (``store`` when that
    takes the defaults) against one without it."""
    for lever, (with_it, without, modes) in LEVERS.items():
        async with contextlib.AsyncExitStack() as stack:
            ours = store
            if with_it:
                ours = await _open(database, taught, **with_it)
                stack.push_async_callback(ours.close)
            other = await _open(database, taught, **without)
            stack.push_async_callback(other.close)
            await compare_plans(lever, (ours, other), queries, namespace, modes)


async def _postings_size(database: str) -> str:
    connection = await asyncpg.connect(database)
    try:
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM memory_terms) AS n,"
            " pg_total_relation_size('memory_terms') AS bytes,"
            " pg_total_relation_size('memories') AS memories"
        )
    finally:
        await connection.close()
    return (
        f"{row['n']} postings, {row['bytes'] / 2**20:.0f} MB "
        f"(memories {row['memories'] / 2**20:.0f} MB)"
    )


Recall = Callable[[str, str, str], Awaitable[list[str]]]


def in_process(store: MemoryStore, field: str) -> Recall:
    """A recall through the store; returns each hit's ``field`` (key or content)."""

    async def recall(query: str, namespace: str, mode: str) -> list[str]:
        hits = await store.recall(query, namespace=namespace, k=10, mode=mode)  # type: ignore[arg-type]
        return [getattr(hit, field) or "" for hit in hits]

    return recall


def over_http(client: Client, field: str) -> Recall:
    """A recall through ``POST /v1/recall`` on one kept-alive connection (``lean_http``'s, or
    httpx's through ``HttpxClient``)."""

    async def recall(query: str, namespace: str, mode: str) -> list[str]:
        body = {"query": query, "namespaces": [namespace], "k": 10, "mode": mode}
        response = await client.post("/v1/recall", body)
        response.raise_for_status()
        return [hit[field] or "" for hit in response.json()["hits"]]

    return recall


async def measure(
    recalls: dict[str, Recall],
    queries: list[str],
    namespace: str,
    mode: str,
    settle: float = CACHE_LOAD_SECONDS,
) -> dict[str, tuple[tuple[float, float], list[list[str]]]]:
    """For each of ``recalls``: p50 and p99 (ms) of every query in ``mode`` after a warm-up,
    and what each found. The recalls take turns query by query (the order rotating), so that
    the drift of a shared machine falls on each alike."""
    names = list(recalls)
    for query in queries[:WARMUP]:
        for name in names:
            await recalls[name](query, namespace, mode)
    # The processes' caches load in the background from the first recall (SciFact's postings
    # in ~1 s): measured once loaded, as a serving process runs.
    await asyncio.sleep(settle)
    for query in queries[:WARMUP]:
        for name in names:
            await recalls[name](query, namespace, mode)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    found: dict[str, list[list[str]]] = {name: [] for name in names}
    for turn, query in enumerate(queries):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            started = time.perf_counter()
            found[name].append(await recalls[name](query, namespace, mode))
            latencies[name].append(time.perf_counter() - started)
    timings = {name: percentiles(latencies[name]) for name in names}
    return {name: ((timings[name][0], timings[name][2]), found[name]) for name in names}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(
    dsn: str,
    port: int,
    taught: Taught,
    pipe: Connection,
    overrides: dict[str, Any],
    server_options: dict[str, Any],
) -> None:
    """Child process: the HTTP API on ``port`` until the pipe closes (or an hour passes), its
    store's settings changed by ``overrides``, uvicorn's by ``server_options`` (``loop``,
    ``http``: uvicorn's own defaults pick uvloop and httptools when installed)."""
    import threading

    import uvicorn

    from pgrecall.http.app import create_app

    async def main() -> None:
        store = await _open(dsn, taught, **overrides)
        config = uvicorn.Config(
            create_app(store.settings, store=store),
            host="127.0.0.1",
            port=port,
            access_log=False,
            log_level="warning",
            **server_options,  # type: ignore[arg-type]
        )
        server = uvicorn.Server(config)

        def watch() -> None:
            with contextlib.suppress(EOFError):
                pipe.poll(3600)
            server.should_exit = True

        threading.Thread(target=watch, daemon=True).start()
        try:
            await server.serve()
        finally:
            await store.close()

    asyncio.run(main())


@contextlib.asynccontextmanager
async def http_clients(
    dsn: str, taught: Taught, server_options: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[dict[str, Client]]:
    """Clients of the API served by a child process on the database ``dsn`` (its store's
    settings changed by ``overrides``, uvicorn's by ``server_options``, ``pgrecall serve``'s
    by default): "http" (a lean client, ``lean_http``: the server's own time) and "httpx"."""
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(
        target=_serve, args=(dsn, port, taught, theirs, overrides, server_options or SERVE)
    )
    child.start()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as client:
            for _ in range(1200):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code < 500:
                        break
                await asyncio.sleep(0.1)
            lean = LeanConnection("127.0.0.1", port)
            try:
                yield {"http": lean, "httpx": HttpxClient(client)}
            finally:
                await lean.close()
    finally:
        ours.close()
        child.join(30)
        if child.is_alive():
            child.terminate()
            child.join()


def _load_average() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in __import__("os").getloadavg())


def _row(where: str, mode: str, timing: tuple[float, float], quality: str) -> str:
    p50, p99 = timing
    return f"{where:<18}{mode:<9}{p50:>8.2f}{p99:>8.2f}{p99 / p50:>7.1f}x  {quality}"


HEADER = f"{'where':<18}{'mode':<9}{'p50 ms':>8}{'p99 ms':>8}{'p99/50':>8}  quality"


# ``--split``: hybrid recall's legs with its rankings in one statement (``PGRECALL_HYBRID_SPLIT``
# off), beside the default's (two at once when a recall runs alone, recall/split.py).
ONE_STATEMENT = " 1 stmt"
# ``--against``: recall's legs with a setting changed, in every mode.
AGAINST = " alt"
AGAINST_MODES = MODES


@contextlib.asynccontextmanager
async def against_legs(
    database: str, taught: Taught, field: str, http: bool, against: dict[str, Any]
) -> AsyncIterator[dict[str, Recall]]:
    """In-process (and HTTP, lean client) recalls of a store whose settings ``against``
    changes, on ``database``; none when ``against`` is empty."""
    if not against:
        yield {}
        return
    async with contextlib.AsyncExitStack() as stack:
        other = await _open(database, taught, **against)
        stack.push_async_callback(other.close)
        legs = {"in-process" + AGAINST: in_process(other, field)}
        if http:
            served = await stack.enter_async_context(http_clients(database, taught, **against))
            legs["http" + AGAINST] = over_http(served["http"], field)
        yield legs


async def scifact(
    dsn: str,
    limit: int | None,
    http: bool,
    plans: bool,
    random_vectors: bool,
    split: bool,
    against: dict[str, Any],
) -> None:
    """Every test claim (or the first ``limit``) in each mode, in-process and over HTTP; with
    ``split``, hybrid also with its rankings in one statement (``ONE_STATEMENT`` legs)."""
    memories = _load("memories.jsonl")
    tests = _load("queries.jsonl", limit)
    abstracts, questions = (
        [m["text"] for m in memories],
        [q["question"] for q in _load("queries.jsonl")],
    )
    if random_vectors:  # taught too: a vector made per query would be timed with the recall
        generator = np.random.default_rng(7)
        documents = unit_vectors(len(abstracts), generator)
        claims = unit_vectors(len(questions), generator)
    else:
        documents, claims = await scifact_vectors(abstracts, questions)
    taught: Taught = [(abstracts, documents), (questions, claims)]
    score = _score_module()
    database = await fresh_database(dsn, "longdocs_scifact")
    store = await _open(database, taught)
    try:
        for start in range(0, len(memories), 500):
            await store.remember(
                [
                    MemoryInput(m["text"], key=m["id"], metadata={"doc": m["id"]})
                    for m in memories[start : start + 500]
                ],
                namespace=NAMESPACE,
            )
        moved = await move_postings(store, database)
        recalls = {"in-process": in_process(store, "key")}
        questions = [q["question"] for q in tests]
        print(
            f"\nSciFact: {len(memories)} abstracts in one namespace, {len(tests)} claims"
            f"{' (random vectors)' if random_vectors else ''}; {await _postings_size(database)},"
            f" moved in {moved:.0f} s"
        )
        if plans:
            await _compare_levers(store, database, taught, questions, NAMESPACE)
        print(HEADER)
        async with contextlib.AsyncExitStack() as stack:
            if http:
                clients = await stack.enter_async_context(http_clients(database, taught))
                recalls |= {name: over_http(c, "key") for name, c in clients.items()}
            one_statement: dict[str, Recall] = {}
            if split:
                one = await _open(database, taught, hybrid_split=False)
                stack.push_async_callback(one.close)
                one_statement["in-process" + ONE_STATEMENT] = in_process(one, "key")
                if http:
                    served = await stack.enter_async_context(
                        http_clients(database, taught, hybrid_split=False)
                    )
                    one_statement["http" + ONE_STATEMENT] = over_http(served["http"], "key")
            if split:
                await split_cpu({"one statement": one, "split": store}, questions, dsn)
            changed = await stack.enter_async_context(
                against_legs(database, taught, "key", http, against)
            )
            for mode in MODES:
                legs = recalls | one_statement if mode == "hybrid" else recalls
                if mode in AGAINST_MODES:
                    legs = legs | changed
                measured = await measure(legs, questions, NAMESPACE, mode)
                for where, (timing, found) in measured.items():
                    ranked = {q["id"]: hits for q, hits in zip(tests, found, strict=True)}
                    metrics = score.score(tests, ranked, [10])["ALL"]
                    quality = f"hit@10 {metrics['hit@10']:.3f}  nDCG@10 {metrics['ndcg@10']:.3f}"
                    print(_row(where, mode, timing, quality) + f"  ({_load_average()})", flush=True)
                if mode == "hybrid":
                    _compare_split(measured)
                _compare_legs(measured, AGAINST, "the setting changed")
    finally:
        await store.close()


async def split_cpu(
    stores: dict[str, MemoryStore], queries: list[str], dsn: str, rounds: int = 3
) -> None:
    """CPU milliseconds per hybrid recall in process, for each of ``stores``: this process's
    and PostgreSQL's (every backend), from blocks of every query, the stores taking turns
    block by block ``rounds`` times."""
    meter = CpuMeter(trees={"PostgreSQL": await postmaster(dsn)}, alone={"client": os.getpid()})
    spent = {name: {"client": 0.0, "PostgreSQL": 0.0, OTHER: 0.0} for name in stores}
    for _ in range(rounds):
        for name, store in stores.items():
            before = meter.snapshot()
            for query in queries:
                await store.recall(query, namespace=NAMESPACE, k=10)
            for process, seconds in (meter.snapshot() - before).items():
                spent[name][process] += seconds
    recalls = rounds * len(queries)
    baseline = None
    for name, seconds in spent.items():
        total = (seconds["client"] + seconds["PostgreSQL"]) / recalls * 1000
        baseline = baseline or total
        print(
            f"  CPU per hybrid recall, {name}: client {seconds['client'] / recalls * 1000:.2f} ms"
            f" + PostgreSQL {seconds['PostgreSQL'] / recalls * 1000:.2f} = {total:.2f} ms"
            f" ({total / baseline:.2f}x; other jobs {seconds[OTHER] / recalls * 1000:.2f} ms)"
            f"  ({_load_average()})",
            flush=True,
        )


def _compare_split(measured: dict[str, tuple[tuple[float, float], list[list[str]]]]) -> None:
    """Each ``ONE_STATEMENT`` leg against its split twin: p50 ratio, identical top-10 lists."""
    _compare_legs(measured, ONE_STATEMENT, "one statement", "split ")


def _compare_legs(
    measured: dict[str, tuple[tuple[float, float], list[list[str]]]],
    suffix: str,
    label: str,
    prefix: str = "",
) -> None:
    """Each leg named with ``suffix`` against its twin without: p50 ratio, identical top 10."""
    for other, (timing, found) in measured.items():
        if not other.endswith(suffix):
            continue
        twin, twin_found = measured[other.removesuffix(suffix)]
        same = sum(ours == theirs for ours, theirs in zip(twin_found, found, strict=True))
        print(
            f"  {prefix}{other.removesuffix(suffix)}: p50 {twin[0]:.2f} ms against {label} "
            f"{timing[0]:.2f} ms = {timing[0] / twin[0]:.2f}x faster, p99 "
            f"{twin[1]:.2f} against {timing[1]:.2f}; identical top-10 {same}/{len(found)}",
            flush=True,
        )


def long_corpus(size: int, seed: int = 5) -> Corpus:
    """``size`` documents of ``LONG_WORDS`` Zipf words, vectors around real ones."""
    generator = np.random.default_rng(seed)
    texts = sentences(size, generator, tag="d", words=LONG_WORDS)
    metadata: list[dict[str, object]] = [{"doc": i} for i in range(size)]
    return Corpus(texts, metadata, [LONG_NAMESPACE] * size, unit_vectors(size, generator))


async def synthetic(
    dsn: str,
    size: int,
    count: int,
    http: bool,
    plans: bool,
    postings_min_rows: int | None,
    against: dict[str, Any],
    lock: Path | None = None,
) -> None:
    """Long documents in one namespace, through the graph when above the exact threshold;
    ``postings_min_rows`` overrides the namespace size from which keyword recall reads the
    postings (to measure that threshold with ``--plans``)."""
    data = long_corpus(size)
    queries = make_queries(data, LONG_NAMESPACE, count)
    taught = [(data.texts, data.vectors), (queries.texts, queries.vectors)]
    database = await fresh_database(dsn, "longdocs_synthetic")
    overrides = (
        {} if postings_min_rows is None else {"keyword_postings_min_rows": postings_min_rows}
    )
    store = await _open(database, taught, **overrides)
    try:
        started = time.perf_counter()
        for start in range(0, size, 1000):
            await store.remember(
                [
                    MemoryInput(text, metadata=meta)
                    for text, meta in zip(
                        data.texts[start : start + 1000],
                        data.metadata[start : start + 1000],
                        strict=True,
                    )
                ],
                namespace=LONG_NAMESPACE,
            )
        written = time.perf_counter() - started
        moved = await move_postings(store, database)
        started = time.perf_counter()
        await store.index(rebuild=True)
        graph = time.perf_counter() - started
        print(
            f"\nsynthetic: {size} documents of {LONG_WORDS} words in one namespace "
            f"(written in {written:.0f} s, postings {moved:.0f} s, graph {graph:.0f} s), "
            f"{count} queries; {await _postings_size(database)}"
        )
        if lock is not None:
            await measured_at_priority(lock, dsn)
        if plans:
            await _compare_levers(store, database, taught, queries.texts, LONG_NAMESPACE)
        if against:
            print(await postings_per_query(database, LONG_NAMESPACE, queries.texts))
        print(HEADER)
        recalls = {"in-process": in_process(store, "content")}
        async with contextlib.AsyncExitStack() as stack:
            if http:
                clients = await stack.enter_async_context(http_clients(database, taught))
                recalls |= {name: over_http(c, "content") for name, c in clients.items()}
            changed = await stack.enter_async_context(
                against_legs(database, taught, "content", http, against)
            )
            for mode in MODES:
                legs = recalls | changed if mode in AGAINST_MODES else recalls
                # Its postings cache loads once, at keyword's warm-up, in every process at once.
                settle = CACHE_LOAD_SECONDS
                if mode == "keyword":  # in proportion to the postings, 180 s at 100,000
                    settle = max(settle, SYNTHETIC_CACHE_LOAD_SECONDS * size / 100_000)
                measured = await measure(legs, queries.texts, LONG_NAMESPACE, mode, settle)
                for where, (timing, found) in measured.items():
                    quality = ""
                    if mode == "vector":
                        quality = f"recall@10 {recall_at_10(found, queries.truth)[0]:.4f}"
                    print(_row(where, mode, timing, quality) + f"  ({_load_average()})", flush=True)
                _compare_legs(measured, AGAINST, "the setting changed")
    finally:
        await store.close()


async def measured_at_priority(lock: Path, dsn: str) -> None:
    """``--build-niced``: the namespace was built at this process's (niced) priority; take the
    benchmark lock (held until the process ends) and bring this process and the PostgreSQL
    server's processes back to normal priority for the measurements (backends forked later
    inherit the postmaster's; the HTTP children this process's)."""
    started = time.perf_counter()
    _held.append(await asyncio.to_thread(_locked, lock))
    server = psutil.Process(await postmaster(dsn))
    for process in [psutil.Process(), server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            process.nice(0)
    print(
        f"lock {lock} taken after {time.perf_counter() - started:.0f} s; normal priority from "
        f"here ({_load_average()})",
        flush=True,
    )


_held: list[Any] = []  # the lock's file, open until the process ends


def _locked(lock: Path) -> Any:
    handle = open(lock, "a")  # noqa: SIM115 - held until the process ends
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


async def postings_per_query(database: str, namespace: str, queries: list[str]) -> str:
    """How many postings the queries read (p50, p99, most), and the postings statement's time
    (recall/bm25.py: the round trip, bytes included)."""
    params = SqlParams()
    scope = bm25.namespaces_scope(params, [namespace], generic=True)
    sql = bm25.postings_statement(scope, params.add("", "text"))
    connection = await asyncpg.connect(database)
    counts, times = [], []
    try:
        for query in queries:
            started = time.perf_counter()
            rows = await connection.fetch(sql, namespace, query)
            times.append(time.perf_counter() - started)
            counts.append(bm25.postings_read(rows))
    finally:
        await connection.close()
    return (
        f"postings a query: p50 {np.median(counts):.0f}, p99 {np.percentile(counts, 99):.0f}, "
        f"most {max(counts)}; their statement p50 {np.median(times) * 1000:.2f} ms, p99 "
        f"{np.percentile(times, 99) * 1000:.2f} ms ({_load_average()})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000, help="synthetic documents")
    parser.add_argument("--queries", type=int, default=200, help="synthetic queries")
    parser.add_argument("--limit", type=int, default=None, help="SciFact claims (all: 300)")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-scifact", action="store_true")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument(
        "--plans",
        action="store_true",
        help="each lever against its absence: keyword postings, vector copies",
    )
    parser.add_argument(
        "--random-vectors", action="store_true", help="SciFact without the model (timing only)"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="SciFact hybrid also with its rankings in one statement (PGRECALL_HYBRID_SPLIT off)",
    )
    parser.add_argument(
        "--postings-min-rows",
        type=int,
        default=None,
        help="synthetic: namespaces from this size read the keyword postings (default: settings)",
    )
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="every mode also with this setting changed (e.g. keyword_scoring=sql)",
    )
    parser.add_argument(
        "--build-niced",
        type=Path,
        default=None,
        metavar="LOCK",
        help="synthetic: build at this process's priority (run it under nice), then take the "
        "lock file LOCK and measure at normal priority",
    )
    arguments = parser.parse_args()
    against = dict(item.split("=", 1) for item in arguments.against)
    print(f"{machine()}; {_load_average()}")
    async with embedded_server() as dsn:
        if not arguments.no_scifact:
            await scifact(
                dsn,
                arguments.limit,
                not arguments.no_http,
                arguments.plans,
                arguments.random_vectors,
                arguments.split,
                against,
            )
        if not arguments.no_synthetic:
            await synthetic(
                dsn,
                arguments.size,
                arguments.queries,
                not arguments.no_http,
                arguments.plans,
                arguments.postings_min_rows,
                against,
                arguments.build_niced,
            )


if __name__ == "__main__":
    asyncio.run(main())
