"""pgrecall on a Citus cluster (../shared/citus): distribution, routing, settings, growth.

Each test skips, saying why, where ../shared/citus is absent. The routing tests read what Citus
plans (``EXPLAIN``: ``Task Count``) and what it sends (``citus.log_remote_commands``: the shard
tables each statement names) for the statements a verb really sent, captured on the store's
one connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgrecall import Embedding, EmbeddingSpaceSwitchedError, MemoryInput, MemoryStore
from pgrecall.background.reembed import Reembedder
from pgrecall.db import migrate
from pgrecall.db.pool import create_pool
from pgrecall.db.vectors import register_vector_codec
from pgrecall.embedding import lifecycle
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.embedding.registry import create_embedder
from pgrecall.records import Hit
from pgrecall.spaces import SpaceMover

from .citus_cluster import CitusCluster
from .conftest import TEST_DIMENSIONS, store_settings
from .fakes import HashEmbedder
from .ollama_standin import OllamaStandin
from .test_reembed import RECHECK, _environment, _new_settings, _reembed

# The capture's log listener stays on its one pooled connection until released, on purpose:
# asyncpg warns at every release.
_KEEPS_ITS_LISTENER = pytest.mark.filterwarnings(
    "ignore:.*active log listener:asyncpg.InterfaceWarning"
)
_SHARD_TABLE = re.compile(r"\bmemories_(\d+)\b")
_TERMS_SHARD = re.compile(r"\bmemory_terms_(\d+)\b")
_TASK_COUNT = re.compile(r"Task Count: (\d+)")


@dataclass
class Sent:
    """A statement the store sent, its arguments, and the remote commands Citus issued for it."""

    query: str
    args: tuple[Any, ...]
    remote: list[str] = field(default_factory=list)


class CapturingStore:
    """A store on one pooled connection whose statements and Citus remote commands are kept."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._notices: list[str] = []
        self.store: MemoryStore
        self.pool: asyncpg.Pool

    async def open(
        self, dsn: str, embedder: Embedder, connections: int = 1, **overrides: object
    ) -> MemoryStore:
        settings = store_settings(worker=False, **overrides)
        # pgrecall's pool (db/pool.py) but with Citus logging the commands it sends to shards,
        # and the listeners put back at each acquire (asyncpg drops them at each release).
        self.pool = await asyncpg.create_pool(
            dsn,
            min_size=connections,
            max_size=connections,
            init=register_vector_codec,
            setup=self._listen,
            server_settings={
                "hnsw.ef_search": str(settings.hnsw_ef_search),
                "hnsw.iterative_scan": "relaxed_order",
                "citus.log_remote_commands": "on",
            },
        )
        async with AsyncExitStack() as held:
            for _ in range(connections):
                connection = await held.enter_async_context(self.pool.acquire())
                connection.add_query_logger(self._sent)
        self.store = MemoryStore(settings, self.pool, dsn, embedder, AsyncExitStack())
        return self.store

    async def _listen(self, connection: Any) -> None:
        connection.add_log_listener(lambda _, message: self._notices.append(str(message)))

    def _sent(self, record: Any) -> None:
        self.sent.append(Sent(record.query, tuple(record.args or ()), self._notices))
        self._notices = []

    async def during(self, work: Awaitable[object]) -> list[Sent]:
        """The statements ``work`` sent that touch memories (remote commands of an unlogged
        COPY go with the statement after it)."""
        self.sent.clear()
        self._notices = []
        await work
        if self._notices:
            self.sent.append(Sent("COPY memories", (), self._notices))
        return [sent for sent in self.sent if "memories" in sent.query]

    async def close(self) -> None:
        await self.store.close()
        await self.pool.close()


@pytest.fixture
async def capturing(
    citus_dsn: str, local_embedder: LocalEmbedder
) -> AsyncIterator[tuple[CapturingStore, asyncpg.Connection]]:
    capture = CapturingStore()
    await capture.open(citus_dsn, local_embedder)
    explainer = await asyncpg.connect(citus_dsn)
    await register_vector_codec(explainer)
    yield capture, explainer
    await explainer.close()
    await capture.close()


async def _task_counts(explainer: asyncpg.Connection, sent: Sent) -> list[int]:
    plan = await explainer.fetch(f"EXPLAIN (COSTS OFF) {sent.query}", *sent.args)
    return [int(n) for n in _TASK_COUNT.findall("\n".join(row[0] for row in plan))]


def _shards(sent: Sent, table: re.Pattern[str] = _SHARD_TABLE) -> set[int]:
    return {int(shard) for command in sent.remote for shard in table.findall(command)}


async def _shard_of(explainer: asyncpg.Connection, namespace: str, table: str = "memories") -> int:
    return int(
        await explainer.fetchval(
            "SELECT get_shard_id_for_distribution_column($1::regclass, $2::text)", table, namespace
        )
    )


async def _assert_one_shard(
    explainer: asyncpg.Connection, sent: list[Sent], namespace: str, verb: str
) -> None:
    """Every statement plans one task and reaches the namespace's shard alone; the upserts
    (INSERT .. SELECT, pulled to the coordinator, no tasks to plan) and COPY are judged by the
    remote commands alone."""
    assert sent, f"{verb}: no statement captured"
    shard = await _shard_of(explainer, namespace)
    for statement in sent:
        where = f"{verb}: {' '.join(statement.query.split())[:100]}"
        if not statement.query.startswith("COPY"):
            counts = await _task_counts(explainer, statement)
            if "INSERT INTO memories" not in statement.query:
                assert counts, f"{where}: no distributed plan"
            assert all(count == 1 for count in counts), f"{where}: Task Count {counts}"
        assert _shards(statement) <= {shard}, f"{where}: reached shards {_shards(statement)}"
    assert set().union(*map(_shards, sent)) == {shard}, f"{verb}: never reached shard {shard}"


async def test_migrate_distributes_idempotently_and_later_migrations_run_distributed(
    citus_empty_dsn: str,
) -> None:
    """Distributed at 0003, the tables take 0004-head as distributed tables; migrating again
    changes nothing; the shards hold every index of the schema."""
    await migrate.upgrade(citus_empty_dsn, TEST_DIMENSIONS, revision="0003")
    connection = await asyncpg.connect(citus_empty_dsn)
    try:
        kinds = """SELECT table_name::text, citus_table_type, distribution_column
                   FROM citus_tables ORDER BY 1"""
        expected = [
            ("embedding_spaces", "reference", "<none>"),
            ("memories", "distributed", "namespace"),
        ]
        assert [tuple(row) for row in await connection.fetch(kinds)] == expected
        await migrate.upgrade(citus_empty_dsn, TEST_DIMENSIONS, revision="0011")
        # The versions' vectors stay in the row on the shards too (set before 0011 distributes;
        # 0012's untyped column brings the type's default back on the shards).
        storage = await connection.fetch(
            """SELECT result FROM run_command_on_shards('memory_versions',
               $$SELECT attstorage FROM pg_attribute
                 WHERE attrelid = '%s'::regclass AND attname = 'embedding'$$)"""
        )
        assert storage
        assert {row["result"] for row in storage} == {"p"}
        await migrate.upgrade(citus_empty_dsn, TEST_DIMENSIONS)
        await migrate.upgrade(citus_empty_dsn, TEST_DIMENSIONS)
        expected += [
            ("memory_audit", "distributed", "namespace"),
            ("memory_term_counts", "distributed", "namespace"),
            ("memory_terms", "distributed", "namespace"),
            ("memory_vectors", "distributed", "namespace"),
            ("memory_versions", "distributed", "namespace"),
            ("space_vectors", "distributed", "namespace"),
        ]
        assert [tuple(row) for row in await connection.fetch(kinds)] == expected
        colocation = """SELECT count(DISTINCT colocation_id) FROM citus_tables
                        WHERE distribution_column = 'namespace'"""
        assert await connection.fetchval(colocation) == 1
        assert await migrate.current_revision(citus_empty_dsn) == migrate.head_revision()
        indexes = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'memories' ORDER BY 1"
        )
        on_shards = await connection.fetch(
            """SELECT result FROM run_command_on_shards('memories',
               $$SELECT string_agg(regexp_replace(indexname, '_[0-9]+$', ''), ',')
                 FROM pg_indexes WHERE tablename = '%s'$$)"""
        )
        assert on_shards
        wanted = sorted(row["indexname"] for row in indexes)
        assert all(sorted(row["result"].split(",")) == wanted for row in on_shards)
    finally:
        await connection.close()


@_KEEPS_ITS_LISTENER
async def test_each_verb_of_a_named_namespace_runs_on_its_shard_alone(
    capturing: tuple[CapturingStore, asyncpg.Connection],
) -> None:
    capture, explainer = capturing
    store = capture.store
    namespace = "routing"
    await store.remember(["Elsewhere: a decoy.", "Another decoy."], namespace="other")

    sent = await capture.during(
        store.remember(["Ada likes tea.", "Bob fixes bikes."], namespace=namespace)
    )
    await _assert_one_shard(explainer, sent, namespace, "remember new")
    sent = await capture.during(
        store.remember("Ada likes tea.", namespace=namespace, metadata={"seen": 2})
    )
    await _assert_one_shard(explainer, sent, namespace, "remember again, changed")
    sent = await capture.during(store.remember("Ada's cat is Tom.", namespace=namespace, key="cat"))
    await _assert_one_shard(explainer, sent, namespace, "remember keyed")
    sent = await capture.during(store.remember("Ada's cat is Tim.", namespace=namespace, key="cat"))
    await _assert_one_shard(explainer, sent, namespace, "remember keyed, changed")
    for turn in ("Ada: hello.", "Bob: hi, Ada."):  # the second is indexed after the first
        sent = await capture.during(
            store.remember(turn, namespace=namespace, metadata={"session": "s1"})
        )
        assert any("WITH ORDINALITY AS w(thread" in s.query for s in sent)
        await _assert_one_shard(explainer, sent, namespace, "remember in a thread")

    for mode in ("vector", "keyword", "hybrid"):
        store._sizes.forget([namespace])  # the size count is part of a first recall
        sent = await capture.during(store.recall("tea", namespace=namespace, mode=mode))
        await _assert_one_shard(explainer, sent, namespace, f"recall {mode}")
    sent = await capture.during(store.recall("hello", namespace=namespace, neighbours=1))
    assert any("AS side" in s.query for s in sent), "no neighbours looked up"
    await _assert_one_shard(explainer, sent, namespace, "recall with neighbours")

    memory = (await store.recall("tea", namespace=namespace, k=1)).hits[0]
    sent = await capture.during(store.get(memory.id, namespace=namespace))
    await _assert_one_shard(explainer, sent, namespace, "get")
    sent = await capture.during(store.list(namespace, status="embedded"))
    await _assert_one_shard(explainer, sent, namespace, "list by status")
    sent = await capture.during(store.stats(namespace=namespace))
    await _assert_one_shard(explainer, sent, namespace, "stats")
    sent = await capture.during(
        store.update(memory.id, namespace=namespace, content="Ada likes green tea.")
    )
    await _assert_one_shard(explainer, sent, namespace, "update")
    sent = await capture.during(store.forget([memory.id], namespace=namespace))
    await _assert_one_shard(explainer, sent, namespace, "forget")

    await explainer.execute(
        "UPDATE memories SET status = 'pending', embedding = NULL, space_id = NULL "
        "WHERE namespace = $1",
        namespace,
    )
    sent = await capture.during(store.worker.run_once())
    # The worker first peeks, without locks, at which namespaces have due rows (every shard);
    # what it claims, locks and writes is one namespace's.
    claims = [s for s in sent if "FOR UPDATE" in s.query or s.query.lstrip().startswith("UPDATE")]
    assert any("FOR UPDATE" in s.query for s in claims)
    await _assert_one_shard(explainer, claims, namespace, "worker")
    assert (await store.stats(namespace=namespace)).pending == 0


@_KEEPS_ITS_LISTENER
async def test_recall_from_the_vector_copies_runs_on_one_shard(
    citus_dsn: str, local_embedder: LocalEmbedder
) -> None:
    """A namespace with vector copies: their exact scan, and the triggers that drop a changed
    or forgotten memory's copy, each run on the namespace's shard alone."""
    capture = CapturingStore()
    store = await capture.open(citus_dsn, local_embedder, vector_copy_min_rows=5)
    explainer = await asyncpg.connect(citus_dsn)
    try:
        await register_vector_codec(explainer)
        texts = [f"Note {n}: the {w} arrives on day {n}." for n, w in enumerate("abcdefghij")]
        ids = [memory.id for memory in await store.remember(texts, namespace="copied")]
        await store.index()
        assert await explainer.fetchval("SELECT count(*) FROM memory_vectors") == len(texts)
        sent = await capture.during(store.update(ids[0], namespace="copied", content="Changed."))
        await _assert_one_shard(explainer, sent, "copied", "update of a copied memory")
        sent = await capture.during(store.forget([ids[1]], namespace="copied"))
        await _assert_one_shard(explainer, sent, "copied", "forget of a copied memory")
        assert await explainer.fetchval("SELECT count(*) FROM memory_vectors") == len(texts) - 2
        for mode in ("vector", "hybrid"):
            store._sizes.forget(["copied"])
            sent = await capture.during(store.recall("arrives", namespace="copied", mode=mode))
            assert any("memory_vectors" in s.query for s in sent), "copies not read"
            await _assert_one_shard(explainer, sent, "copied", f"recall {mode} (copies)")
            result = await store.recall("arrives", namespace="copied", mode=mode)
            assert result.exact
            assert len(result.hits) == len(texts) - 1
    finally:
        await explainer.close()
        await capture.close()


@_KEEPS_ITS_LISTENER
async def test_keyword_postings_run_on_the_namespace_shard(
    citus_dsn: str, local_embedder: LocalEmbedder
) -> None:
    """The postings mover, BM25 from the postings and their stored count (migrations 0013 and
    0015), and a forget through their triggers: each statement on the namespace's shard."""
    capture = CapturingStore()
    store = await capture.open(
        citus_dsn, local_embedder, keyword_postings_min_rows=3, space_recheck_seconds=3600
    )
    explainer = await asyncpg.connect(citus_dsn)
    await register_vector_codec(explainer)
    namespace = "postings"
    try:
        await store.remember(["Elsewhere: a decoy about tea.", "Decoy two."], namespace="other")
        ids = await store.remember(
            ["Ada likes green tea.", "Bob fixes bikes.", "Tea grows on hills."],
            namespace=namespace,
        )
        sent = await capture.during(store.postings.move_batch(namespace))
        await _assert_one_shard(explainer, sent, namespace, "move postings")
        counted = "SELECT documents FROM memory_term_counts WHERE namespace = $1"
        assert await explainer.fetchval(counted, namespace) == 3
        for mode in ("keyword", "hybrid"):
            store._sizes.forget([namespace])
            sent = await capture.during(store.recall("tea hills", namespace=namespace, mode=mode))
            assert any("memory_term_counts" in s.query for s in sent), "not from the postings"
            await _assert_one_shard(explainer, sent, namespace, f"recall {mode} from postings")
        found = await store.recall("tea hills", namespace=namespace, mode="keyword")
        assert found.hits[0].content == "Tea grows on hills."
        sent = await capture.during(store.forget([ids[2].id], namespace=namespace))
        await _assert_one_shard(explainer, sent, namespace, "forget a moved memory")
        assert await explainer.fetchval(counted, namespace) == 2
    finally:
        await explainer.close()
        await capture.close()


@_KEEPS_ITS_LISTENER
async def test_split_hybrid_recall_runs_on_one_shard(
    citus_dsn: str, local_embedder: LocalEmbedder
) -> None:
    """A hybrid recall running alone on a pool of two connections (recall/split.py): its two
    rankings (the copies and postings, before and after they are filled) and the statement that
    fuses them from arrays, each on the namespace's shard alone."""
    capture = CapturingStore()
    store = await capture.open(
        citus_dsn,
        local_embedder,
        connections=2,
        vector_copy_min_rows=5,
        keyword_postings_min_rows=5,
    )
    explainer = await asyncpg.connect(citus_dsn)
    try:
        await register_vector_codec(explainer)
        await store.remember(["Elsewhere: a decoy about tea.", "Decoy two."], namespace="other")
        texts = [f"Note {n}: the {w} arrives with tea on day {n}." for n, w in enumerate("abcdef")]
        await store.remember(texts, namespace="split")
        for moved in (False, True):
            store._sizes.forget(["split"])
            sent = await capture.during(store.recall("tea arrives", namespace="split"))
            assert any("AS given (namespace, id, score, rank)" in s.query for s in sent)
            assert any("memory_vectors" in s.query for s in sent), "copies not read"
            await _assert_one_shard(explainer, sent, "split", f"split hybrid, moved {moved}")
            assert len((await store.recall("tea arrives", namespace="split")).hits) == len(texts)
            await store.index()
    finally:
        await explainer.close()
        await capture.close()


@_KEEPS_ITS_LISTENER
async def test_recall_through_the_graph_runs_on_one_shard(
    citus_dsn: str, local_embedder: LocalEmbedder
) -> None:
    """Above the exact-scan size recall walks the HNSW index on the shard, still one task."""
    capture = CapturingStore()
    store = await capture.open(citus_dsn, local_embedder, exact_scan_max_rows=5)
    explainer = await asyncpg.connect(citus_dsn)
    try:
        await register_vector_codec(explainer)
        texts = [f"Note {n}: the {w} arrives on day {n}." for n, w in enumerate("abcdefghij")]
        await store.remember(texts, namespace="large")
        # The graph is built on the shards, with the build's memory (the default 64MB built a
        # 100k namespace's graph 4x slower than plain PostgreSQL with 1GB).
        sent = await capture.during(store.index(rebuild=True))
        built = [s for s in sent if s.query.startswith("CREATE INDEX")]
        assert built
        assert any("SET LOCAL maintenance_work_mem = '1GB'" in c for c in built[0].remote)
        assert await explainer.fetchval("SELECT count(*) FROM memories WHERE hnsw_indexed") == 10
        for mode in ("vector", "hybrid"):
            store._sizes.forget(["large"])
            sent = await capture.during(store.recall("arrives", namespace="large", mode=mode))
            await _assert_one_shard(explainer, sent, "large", f"recall {mode} (HNSW)")
            result = await store.recall("arrives", namespace="large", mode=mode)
            assert not result.exact
            assert len(result.hits) == len(texts)
    finally:
        await explainer.close()
        await capture.close()


def _ranked(hits: tuple[Hit, ...]) -> list[tuple[str, str, float]]:
    return [(hit.namespace, hit.content, round(hit.score, 5)) for hit in hits]


# Keyword postings (migration 0013) for namespaces from this many memories, lowered to keep the
# test small; "kb" is above it, "small" below (never moved).
_POSTINGS_MIN_ROWS = 20
_TOPICS = [
    "harbour",
    "lighthouse",
    "ferry",
    "storm",
    "gull",
    "tide",
    "beacon",
    "cliff",
    "anchor",
    "sail",
]


def _postings_corpus() -> list[MemoryInput]:
    """Distinct topic words drawn at random, the first repeated, and filler words up to a
    length (distinct lexemes) of its own per memory: no two memories tie on BM25 (its ties fall
    back to the ids, which differ between engines)."""
    rng = np.random.default_rng(23)
    memories = []
    for n in range(40):
        topics = list(rng.choice(_TOPICS, size=int(rng.integers(2, 7)), replace=False))
        repeats = [topics[0]] * int(rng.integers(0, 3))
        filler = [f"x{n}y{j}" for j in range(n + 8 - len(topics))]
        memories.append(
            MemoryInput(
                " ".join([*topics, *repeats, *filler]),
                key=f"m{n}",
                namespace="kb",
                metadata={"n": n},
            )
        )
    memories += [MemoryInput(f"the {word} by the quay", namespace="small") for word in _TOPICS[:4]]
    return memories


async def _postings_state(connection: asyncpg.Connection) -> tuple[int, int, int]:
    """Moved memories, postings, and postings of no moved memory (left behind: none)."""
    moved = await connection.fetchval("SELECT count(*) FROM memories WHERE terms_indexed")
    postings = await connection.fetchval("SELECT count(*) FROM memory_terms")
    orphans = await connection.fetchval(
        "SELECT count(*) FROM memory_terms t WHERE NOT EXISTS (SELECT 1 FROM memories m "
        "WHERE m.namespace = t.namespace AND m.id = t.memory_id AND m.terms_indexed)"
    )
    return int(moved), int(postings), int(orphans)


async def _postings_cycle(
    store: MemoryStore, connection: asyncpg.Connection
) -> tuple[list[list[tuple[str, str, float]]], list[tuple[int, int, int]]]:
    """Load, move, change, forget, delete and recall; the hits and the postings' states."""
    await store.remember(_postings_corpus())
    states = [await _postings_state(connection)]
    await store.index()
    states.append(await _postings_state(connection))
    by_key = {m.key: m for m in (await store.list("kb", limit=100)).memories}
    await store.update(by_key["m5"].id, namespace="kb", content="beacon beacon beacon anew")
    await store.forget([by_key["m6"].id], namespace="kb")
    await store.forget(namespace="kb", filter={"n": 7})  # a filtered forget: no ids
    await connection.execute(
        "UPDATE memories SET expires_at = now() - interval '30 days' "
        "WHERE namespace = 'kb' AND key = 'm8'"
    )
    assert await store.sweeper.sweep() == 1
    await store.remember("storm over the harbour tonight", namespace="kb")  # not moved yet
    states.append(await _postings_state(connection))
    queries = ["beacon storm", "harbour ferry gull", "tide anchor sail cliff", "lighthouse"]
    hits = [
        _ranked((await store.recall(query, namespace=names, mode=mode, k=50)).hits)
        for query in queries
        for mode in ("keyword", "hybrid")
        for names in (["kb"], ["kb", "small"])
    ]
    await store.index()  # moves the changed memory and the new one
    states.append(await _postings_state(connection))
    hits += [
        _ranked((await store.recall(query, namespace="kb", mode="keyword", k=50)).hits)
        for query in queries
    ]
    return hits, states


@_KEEPS_ITS_LISTENER
async def test_keyword_postings_on_the_cluster(citus_dsn: str, pg_migrated_dsn: str) -> None:
    """Postings written, kept by the triggers (a text changed, forgotten by id and by filter,
    swept when expired) and read by keyword and hybrid recall as on plain PostgreSQL, same hits;
    the mover's batch and the recall statement run on the namespace's shard alone."""
    settings = {"keyword_postings_min_rows": _POSTINGS_MIN_ROWS}
    results = {}
    plain = await MemoryStore.open(
        store_settings(worker=False, **settings), dsn=pg_migrated_dsn, embedder=HashEmbedder()
    )
    connection = await asyncpg.connect(pg_migrated_dsn)
    try:
        results["postgres"] = await _postings_cycle(plain, connection)
    finally:
        await connection.close()
        await plain.close()

    capture = CapturingStore()
    store = await capture.open(citus_dsn, HashEmbedder(), **settings)
    explainer = await asyncpg.connect(citus_dsn)
    try:
        await register_vector_codec(explainer)
        results["citus"] = await _postings_cycle(store, explainer)
        # Routing, on one more batch to move and a recall through the postings.
        await store.remember([f"sail and tide, note {n}" for n in range(3)], namespace="kb")
        assert await store.postings.large_namespaces_behind() == ["kb"]
        sent = await capture.during(store.postings.move_batch("kb"))
        assert any("INSERT INTO memory_terms" in s.query for s in sent)
        await _assert_one_shard(explainer, sent, "kb", "postings move")
        terms_shard = await _shard_of(explainer, "kb", "memory_terms")
        assert set().union(*(_shards(s, _TERMS_SHARD) for s in sent)) == {terms_shard}
        for mode in ("keyword", "hybrid"):
            store._sizes.forget(["kb"])
            sent = await capture.during(store.recall("sail tide", namespace="kb", mode=mode))
            assert any("memory_terms" in s.query for s in sent), f"{mode}: postings not read"
            await _assert_one_shard(explainer, sent, "kb", f"recall {mode} (postings)")
    finally:
        await explainer.close()
        await capture.close()

    hits, states = results["citus"]
    assert all(hits)
    # Nothing moved at first; 40 moved, "small" never; after the changes 36 (m5 changed, three
    # gone, the new one not moved yet); then 38; never a posting left behind.
    assert [(moved, orphans) for moved, _, orphans in states] == [(0, 0), (40, 0), (36, 0), (38, 0)]
    assert results["citus"] == results["postgres"]


async def test_recall_across_namespaces_matches_plain_postgresql(
    citus_dsn: str, pg_migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    memories = [
        MemoryInput(content=text, namespace=f"team-{n % 3}", metadata={"n": n, "session": n % 2})
        for n, text in enumerate(
            [
                "The shipment leaves on Thursday.",
                "The physician prescribed antibiotics.",
                "Quarterly revenue grew by eight percent.",
                "The team enjoyed the offsite in the mountains.",
                "Water the office plants every Monday.",
                "The printer on the third floor is out of toner.",
                "Thursday's shipment was delayed by the storm.",
                "Revenue forecasts were revised upward.",
                "The physician's office moved to the third floor.",
            ]
        )
    ]
    results: dict[str, list[list[tuple[str, str, float]]]] = {}
    for engine, dsn in (("citus", citus_dsn), ("postgres", pg_migrated_dsn)):
        store = await MemoryStore.open(store_settings(), dsn=dsn, embedder=local_embedder)
        try:
            await store.remember(memories)
            names = ["team-0", "team-1", "team-2"]
            results[engine] = [
                _ranked((await store.recall(query, namespace=names, mode=mode, k=5)).hits)
                for query in ("shipment on Thursday", "third floor office")
                for mode in ("vector", "keyword", "hybrid")
            ]
            # Neighbours of hits in several namespaces: one lookup per namespace.
            around = await store.recall("physician", namespace=names, k=6, neighbours=1)
            neighbours = [h for h in around.hits if h.vector_score is h.keyword_score is None]
            assert len({h.namespace for h in neighbours}) > 1
            results[engine].append(_ranked(around.hits))
        finally:
            await store.close()
    assert all(results["citus"])
    assert results["citus"] == results["postgres"]


async def test_search_settings_reach_the_shards(
    citus_empty_dsn: str, local_embedder: LocalEmbedder
) -> None:
    """Read on the shard by a statement routed there: the store's ef_search and iterative
    scan, where a pool's own settings stay on the coordinator (shards: Citus's defaults)."""
    on_shard = (
        "SELECT current_setting('hnsw.ef_search') AS ef_search, "
        "current_setting('hnsw.iterative_scan') AS scan FROM memories WHERE namespace = 's'"
    )

    async def shard_settings(ef_search: int) -> tuple[str, str]:
        store = await MemoryStore.open(
            store_settings(hnsw_ef_search=ef_search), dsn=citus_empty_dsn, embedder=local_embedder
        )
        pool = await create_pool(citus_empty_dsn, min_size=1, max_size=1, hnsw_ef_search=ef_search)
        try:
            await store.remember("One memory on its shard.", namespace="s")
            row = await pool.fetchrow(on_shard)
            assert row is not None
            assert await pool.fetchval("SHOW hnsw.ef_search") == str(ef_search)
            return row["ef_search"], row["scan"]
        finally:
            await pool.close()
            await store.close()

    await migrate.upgrade(citus_empty_dsn, TEST_DIMENSIONS, hnsw_ef_search=150)
    connection = await asyncpg.connect(citus_empty_dsn)
    try:
        database = await connection.fetchval("SELECT current_database()")
        await connection.execute(f'ALTER DATABASE "{database}" RESET hnsw.ef_search')
        await connection.execute(f'ALTER DATABASE "{database}" RESET hnsw.iterative_scan')
    finally:
        await connection.close()
    # What the issue measured: the coordinator's session settings stop there.
    assert await shard_settings(150) == ("40", "off")
    await migrate.upgrade(citus_empty_dsn, TEST_DIMENSIONS, hnsw_ef_search=150)
    assert await shard_settings(150) == ("150", "relaxed_order")


async def test_a_third_worker_and_the_rebalancer_lose_nothing_under_load(
    citus_cluster: CitusCluster, citus_empty_dsn: str, local_embedder: LocalEmbedder
) -> None:
    """Writers and readers keep going while Citus moves shards onto a new worker: every write
    is kept, no call fails, recall answers as before."""
    database = citus_empty_dsn.rsplit("/", 1)[1]
    connection = await asyncpg.connect(citus_empty_dsn)
    try:
        # Few shards keep the moves (logical replication each) short on two shared cores.
        await connection.execute(f'ALTER DATABASE "{database}" SET citus.shard_count = 4')
    finally:
        await connection.close()
    await migrate.upgrade(citus_empty_dsn, TEST_DIMENSIONS)
    store = await MemoryStore.open(
        store_settings(worker=False), dsn=citus_empty_dsn, embedder=local_embedder
    )
    namespaces = [f"tenant-{n}" for n in range(8)]
    try:
        await store.remember(
            [
                MemoryInput(content=f"{name} keeps fact {n} about {topic}.", namespace=name)
                for name in namespaces
                for n, topic in enumerate(("tea", "bikes", "rain", "trains"))
            ]
        )
        queries = [(name, "facts about trains") for name in namespaces]
        before = [_ranked((await store.recall(q, namespace=ns, k=4)).hits) for ns, q in queries]
        stop = asyncio.Event()
        written: list[str] = []
        answers: list[list[tuple[str, str, float]]] = []

        async def write() -> None:
            n = 0
            while not stop.is_set():
                content = f"written during the move, number {n}"
                await store.remember(content, namespace=f"writer-{n % 4}")
                written.append(content)
                n += 1

        async def read() -> None:
            while not stop.is_set():
                for name, query in queries:
                    answers.append(_ranked((await store.recall(query, namespace=name, k=4)).hits))

        load = [asyncio.create_task(write()), asyncio.create_task(read())]
        port = await citus_cluster.add_worker([database])
        admin = await asyncpg.connect(citus_empty_dsn)
        try:
            await admin.execute("SELECT rebalance_table_shards(shard_transfer_mode => 'auto')")
            moved = await admin.fetchval(
                """SELECT count(*) FROM citus_shards
                   WHERE table_name = 'memories'::regclass AND nodeport = $1""",
                port,
            )
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*load)  # raises whatever a writer or reader met

        assert moved > 0
        assert written
        assert answers
        after = [_ranked((await store.recall(q, namespace=ns, k=4)).hits) for ns, q in queries]
        assert after == before
        per_namespace = {ns.namespace: ns.memories for ns in (await store.stats()).namespaces}
        assert sum(per_namespace.get(f"writer-{n}", 0) for n in range(4)) == len(written)
        assert all(per_namespace[name] == 4 for name in namespaces)
        assert not [a for a in answers if a not in before]
    finally:
        await store.close()


@_KEEPS_ITS_LISTENER
async def test_the_embedding_model_switch_runs_on_the_cluster(
    citus_empty_dsn: str, local_embedder: LocalEmbedder, ollama: OllamaStandin
) -> None:
    """pgrecall reembed's whole cycle (build, switch, rollback, switch, drop the old) on
    distributed tables, small (test_reembed.py runs it at size on plain PostgreSQL); each claim
    of the build and the vectors it writes stay on the namespace's shards. A database of its
    own: the switch leaves it at 768 dimensions."""
    citus_dsn = citus_empty_dsn
    await migrate.upgrade(citus_dsn, TEST_DIMENSIONS)
    capture = CapturingStore()
    await capture.open(citus_dsn, local_embedder, space_recheck_seconds=RECHECK)
    explainer = await asyncpg.connect(citus_dsn)
    try:
        await _switch_cycle(capture, explainer, citus_dsn, ollama)
    finally:
        await explainer.close()
        await capture.close()


async def _switch_cycle(
    capture: CapturingStore, explainer: asyncpg.Connection, citus_dsn: str, ollama: OllamaStandin
) -> None:
    old_store = capture.store
    namespaces = ["agent-0", "agent-1", "agent-2"]
    vectors = np.random.default_rng(5).standard_normal((90, TEST_DIMENSIONS))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await old_store.remember(
        [
            MemoryInput(
                content=f"note {i}: fact {i % 7} about topic {i % 5}",
                namespace=namespaces[i % 3],
                embedding=Embedding(old_store.space, vector.tolist()),
            )
            for i, vector in enumerate(vectors)
        ]
    )
    new_settings = _new_settings(ollama)
    async with await SpaceMover.open(new_settings, dsn=citus_dsn) as mover:
        active, progress = await mover.begin()
    assert (active.space.dimensions, progress.space.dimensions) == (384, 768)
    assert (progress.done, progress.total) == (0, len(vectors))

    # One batch of one namespace, as the build claims it: the claim, the re-read and the
    # vectors' insert reach that namespace's shards of memories and space_vectors alone.
    building = (await lifecycle.states(capture.pool))["building"]
    embedder = create_embedder(new_settings)
    try:
        claimer = Reembedder(capture.pool, embedder, active.id, building.id, batch_size=10)
        sent = await capture.during(claimer.batch("agent-1"))
    finally:
        await embedder.aclose()
    assert any("FOR NO KEY UPDATE" in s.query for s in sent)
    await _assert_one_shard(explainer, sent, "agent-1", "reembed claim")
    [written] = [s for s in capture.sent if "INSERT INTO space_vectors" in s.query]
    vectors_shard = await _shard_of(explainer, "agent-1", "space_vectors")
    assert _shards(written, re.compile(r"\bspace_vectors_(\d+)\b")) == {vectors_shard}

    environment = _environment(citus_dsn, ollama)
    code, stdout, stderr = await _reembed(environment, "--switch")
    assert code == 0, stderr
    assert f"{len(vectors) - 10} memories embedded by this process" in stdout
    assert "switched to ollama:nomic-embed-text" in stdout
    with pytest.raises(EmbeddingSpaceSwitchedError):
        await old_store.recall("topic 3", namespace="agent-0")
    new_store = await MemoryStore.open(
        _new_settings(ollama, worker=False), dsn=citus_dsn, embedder=None
    )
    try:
        found = await new_store.recall("note 4: fact 4 about topic 4", namespace="agent-1", k=3)
        assert found.hits[0].content == "note 4: fact 4 about topic 4"
        assert (await new_store.stats()).space.dimensions == 768  # type: ignore[union-attr]
    finally:
        await new_store.close()

    # The rest through the mover (what the CLI's flags call; their output is test_reembed's).
    async with await SpaceMover.open(_new_settings(ollama), dsn=citus_dsn) as mover:
        before = await _shard_results(explainer, _SHARD_PKEY_FILE)
        back = await mover.switch(rollback=True, compact_indexes=True)
        assert (back.new.space.dimensions, back.moved) == (384, len(vectors))
        # The compaction's REINDEX reached every shard: each primary key is a new file.
        assert back.compaction is not None
        assert "memories_pkey" in back.compaction.rebuilt
        after = await _shard_results(explainer, _SHARD_PKEY_FILE)
        assert after.keys() == before.keys()
        assert all(after[shard] != before[shard] for shard in before)
        await asyncio.sleep(RECHECK)  # the old process reads the active space again
        assert len((await old_store.recall("topic 3", namespace="agent-2", k=5)).hits) == 5
        assert await mover.build() == 0  # the rolled-back vectors were kept
        assert (await mover.switch()).moved == len(vectors)
        assert (await mover.drop_old()).space.dimensions == 384
        # A rebuild killed on a worker leaves its invalid index on the shard, where the
        # coordinator's catalog does not show it: the next compaction drops it there. (A unique
        # index on a constant fails on a shard of two rows or more, leaving it invalid.)
        await explainer.fetch(_ON_SHARDS, _SHARD_FAILED_INDEX)
        assert await _shard_invalid_indexes(explainer) > 0
        await mover.compact()
        assert await _shard_invalid_indexes(explainer) == 0
    assert await explainer.fetchval("SELECT count(*) FROM space_vectors") == 0


_ON_SHARDS = "SELECT shardid, success, result FROM run_command_on_shards('memories', $1)"
_SHARD_PKEY_FILE = (
    "SELECT pg_relation_filenode(conindid) FROM pg_constraint "
    "WHERE conrelid = '%s'::regclass AND contype = 'p'"
)
_SHARD_INVALID = "SELECT count(*) FROM pg_index WHERE indrelid = '%s'::regclass AND NOT indisvalid"
_SHARD_FAILED_INDEX = "CREATE UNIQUE INDEX CONCURRENTLY %1$s_ccnew ON %1$s ((1))"


async def _shard_results(connection: asyncpg.Connection, command: str) -> dict[int, str]:
    """``command``'s answer on each shard of memories (``%s``: the shard's name)."""
    rows = await connection.fetch(_ON_SHARDS, command)
    assert all(row["success"] for row in rows), [row["result"] for row in rows]
    return {row["shardid"]: row["result"] for row in rows}


async def _shard_invalid_indexes(connection: asyncpg.Connection) -> int:
    return sum(int(count) for count in (await _shard_results(connection, _SHARD_INVALID)).values())
