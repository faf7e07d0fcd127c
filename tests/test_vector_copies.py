"""Vector copies (issue 25): the exact scan of a large namespace reads ``memory_vectors``, copied
in the background, and ranks exactly as the scan of the memories' rows; rows not copied yet are
found at once; expiry, valid time, filters, updates, forget and a model switch hold; writes
leave the table alone."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import asyncpg
from asyncpg.connection import LoggedQuery

from pgrecall import MemoryInput, MemoryStore
from pgrecall.db.pool import create_pool
from pgrecall.db.vectors import register_vector_codec
from pgrecall.spaces import SpaceMover

from .conftest import store_settings
from .fakes import HashEmbedder, text_vector
from .ollama_standin import OllamaStandin

NAMESPACE = "kb"
ROWS = 300


async def _open(dsn: str, min_rows: int, sent: list[LoggedQuery] | None = None) -> MemoryStore:
    """A store whose copies start at ``min_rows``, whose copied plan scans them in the statement
    (no cache of them in the process: tests/test_vector_cache.py); with ``sent``, on a pool of
    one connection whose statements are logged there (asyncpg keeps query loggers across
    releases)."""
    settings = store_settings(worker=False, vector_copy_min_rows=min_rows, vector_cache_mb=0)
    if sent is None:
        return await MemoryStore.open(settings, dsn=dsn, embedder=HashEmbedder())
    pool = await create_pool(dsn, min_size=1, max_size=1)
    async with pool.acquire() as connection:
        connection.add_query_logger(sent.append)
    resources = AsyncExitStack()
    resources.push_async_callback(pool.close)
    return MemoryStore(settings, pool, dsn, HashEmbedder(), resources)


async def _vector(store: MemoryStore, query: str, **options: object) -> list[tuple[str, float]]:
    result = await store.recall(query, namespace=NAMESPACE, k=10, mode="vector", **options)  # type: ignore[arg-type]
    return [(hit.content, round(hit.score, 6)) for hit in result]


async def _copies(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM memory_vectors"))


async def _plan(store: MemoryStore, sent: list[LoggedQuery], query: str, **options: object) -> str:
    """Which rows ``store``'s vector recall of ``query`` scans, read from the statement."""
    sent.clear()
    await store.recall(query, namespace=NAMESPACE, k=3, mode="vector", **options)  # type: ignore[arg-type]
    [recall] = [logged.query for logged in sent if "ORDER BY distance" in logged.query]
    return "copies" if "memory_vectors" in recall else "rows"


async def test_copies_rank_as_the_scan_of_the_rows_and_new_rows_are_found_at_once(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    sent: list[LoggedQuery] = []
    copied = await _open(migrated_dsn, min_rows=100, sent=sent)
    scanned_sent: list[LoggedQuery] = []  # the same store, the old plan:
    scanned = await _open(migrated_dsn, min_rows=1_000_000, sent=scanned_sent)
    try:
        texts = [f"note {i} on topic {i % 17} with word{i % 29}" for i in range(ROWS)]
        await copied.remember(texts, namespace=NAMESPACE)
        assert await _copies(connection) == 0  # remember writes no copy
        await copied.index()
        assert await _copies(connection) == ROWS
        # One memory written after the copy: scanned from its row, beside the copies.
        await copied.remember("a late note about lighthouses", namespace=NAMESPACE)
        assert await _copies(connection) == ROWS
        assert await _plan(copied, sent, "lighthouses") == "copies"
        assert await _plan(scanned, scanned_sent, "lighthouses") == "rows"
        queries = [f"topic {i} word{i}" for i in range(25)] + ["a late note about lighthouses"]
        for query in queries:
            assert await _vector(copied, query) == await _vector(scanned, query), query
            both = [
                [hit.content for hit in await store.recall(query, namespace=NAMESPACE, k=10)]
                for store in (copied, scanned)
            ]
            assert both[0] == both[1], query
        best = await copied.recall("a late note about lighthouses", namespace=NAMESPACE, k=1)
        assert best.hits[0].content == "a late note about lighthouses"
        assert best.exact
        # 15 of a query's nearest 20 expired: the exclusion set leaves them out of the sort.
        nearest = await copied.recall(queries[0], namespace=NAMESPACE, k=20, mode="vector")
        expired = [hit.id for hit in nearest.hits[:15]]
        await connection.execute(
            "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = ANY($1)",
            expired,
        )
        found = [
            hit.id
            for hit in await copied.recall(queries[0], namespace=NAMESPACE, k=10, mode="vector")
        ]
        assert found[:5] == [hit.id for hit in nearest.hits[15:]]
        assert len(found) == 10
        assert not set(found) & set(expired)
        assert await _vector(copied, queries[0]) == await _vector(scanned, queries[0])
    finally:
        await copied.close()
        await scanned.close()


async def _copies_sorted(
    store: MemoryStore, sent: list[LoggedQuery], connection: asyncpg.Connection, query: str
) -> float:
    """How many copies ``store``'s vector recall of ``query`` passes on to its sort: the rows
    of its scan of the copies filtered by the distance bound (EXPLAIN ANALYZE of the statement
    it sent)."""
    assert await _plan(store, sent, query) == "copies"
    [recall] = [logged for logged in sent if "ORDER BY distance" in logged.query]
    await register_vector_codec(connection)
    explained = await connection.fetchval(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {recall.query}", *recall.args
    )

    def passed(plan: dict[str, object]) -> float:
        own = 0.0
        if plan.get("Relation Name") == "memory_vectors" and "<=" in str(plan.get("Filter")):
            own = float(plan["Actual Rows"]) * float(plan["Actual Loops"])  # type: ignore[arg-type]
        children = plan.get("Plans", [])
        assert isinstance(children, list)
        return own + sum(passed(child) for child in children)

    return passed(json.loads(explained)[0]["Plan"])


async def test_the_distance_bound_spares_the_sort_most_copies_and_keeps_ties(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    sent: list[LoggedQuery] = []
    copied = await _open(migrated_dsn, min_rows=100, sent=sent)
    scanned = await _open(migrated_dsn, min_rows=1_000_000)
    rows = 1_000  # more than the bound's sample of 203 copies for ten hits
    query = "series 5 tagged t5"
    nearest = "[" + ",".join(map(str, text_vector(query).tolist())) + "]"
    try:
        # Copies at the query's very vector, the newest by id (the bound's sample is the
        # newest), that are no candidates: another namespace's, and copies of another space in
        # this one. A sample reading them would bound the distance below every candidate's.
        texts = [f"record {i} of series {i % 31} tagged t{i % 37}" for i in range(rows)]
        await copied.remember(texts, namespace=NAMESPACE)
        await copied.remember([f"elsewhere {i}" for i in range(400)], namespace="elsewhere")
        await connection.execute(
            "UPDATE memories SET embedding = $1::vector WHERE namespace = 'elsewhere'", nearest
        )
        await copied.index()
        space = await connection.fetchval("SELECT space_id FROM memories LIMIT 1")
        await connection.execute(
            "INSERT INTO memory_vectors (namespace, id, space_id, embedding) "
            "SELECT $1, ('ffffffff-ffff-4fff-8fff-' || lpad(g::text, 12, '0'))::uuid, $2, "
            "$3::vector FROM generate_series(1, 400) AS g",
            NAMESPACE,
            space + 1,
            nearest,
        )
        assert await _copies(connection) == rows + 800
        # The sort takes the few within the bound, where it took all 1,000 without it.
        assert 0 < await _copies_sorted(copied, sent, connection, query) < 0.2 * rows
        for text in (query, texts[7], "nothing like it"):
            assert await _vector(copied, text) == await _vector(scanned, text), text

        # Three vectors, each a third of the namespace's: the tenth nearest ties with three
        # hundred more, in the sample and out of it; ties are broken by id either way.
        ids = [
            row["id"]
            for row in await connection.fetch(
                "SELECT id FROM memories WHERE namespace = $1 ORDER BY id", NAMESPACE
            )
        ]
        for seed in range(3):
            await connection.execute(
                "UPDATE memories SET embedding = (SELECT embedding FROM memories WHERE id = $1) "
                "WHERE id = ANY($2)",
                ids[seed],
                ids[seed::3],
            )
        await copied.index()
        assert await _copies(connection) == rows + 800
        for text in (query, *texts[:3]):
            assert await _vector(copied, text) == await _vector(scanned, text), text
            both = [
                [hit.id for hit in await store.recall(text, namespace=NAMESPACE, k=10)]
                for store in (copied, scanned)
            ]
            assert both[0] == both[1], text
    finally:
        await copied.close()
        await scanned.close()


async def test_an_exclusion_set_larger_than_the_sample_keeps_the_bound(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    sent: list[LoggedQuery] = []
    copied = await _open(migrated_dsn, min_rows=100, sent=sent)
    scanned = await _open(migrated_dsn, min_rows=1_000_000)
    rows = 1_000
    try:
        texts = [f"fact {i} about harbour {i % 23} and ship s{i % 41}" for i in range(rows)]
        ids = [memory.id for memory in await copied.remember(texts, namespace=NAMESPACE)]
        await copied.index()
        # 400 invalidated, more than the 203 copies of the sample: the query's nearest 20 and
        # the oldest.
        query = "harbour 3 and ship s3"
        nearest = await copied.recall(query, namespace=NAMESPACE, k=20, mode="vector")
        invalid = [hit.id for hit in nearest]
        invalid += [memory for memory in ids if memory not in invalid][: 400 - len(invalid)]
        await connection.execute(
            "UPDATE memories SET valid_until = now() - interval '1 second' WHERE id = ANY($1)",
            invalid,
        )
        assert 0 < await _copies_sorted(copied, sent, connection, query) < 0.5 * rows
        for text in (query, texts[11], "nothing like it"):
            found = await _vector(copied, text)
            assert found == await _vector(scanned, text), text
            assert len(found) == 10
        everything = await copied.recall(
            query, namespace=NAMESPACE, k=10, mode="vector", include_invalid=True
        )
        assert [hit.id for hit in everything] == invalid[:10]
    finally:
        await copied.close()
        await scanned.close()


async def test_expired_invalid_filtered_changed_and_forgotten_memories_hold(
    migrated_dsn: str, connection: asyncpg.Connection
) -> None:
    sent: list[LoggedQuery] = []
    store = await _open(migrated_dsn, min_rows=10, sent=sent)
    try:
        filler = [MemoryInput(f"filler note number {i} about gardens") for i in range(20)]
        ids = await store.remember(
            [
                MemoryInput("the lighthouse keeper feeds the gulls", key="gone"),
                MemoryInput("the lighthouse stands on the northern cape", key="old"),
                MemoryInput("the lighthouse lamp is red", key="red", metadata={"lamp": "red"}),
                MemoryInput("the lighthouse was painted last spring", key="changed"),
                MemoryInput("the lighthouse keeper retired", key="forgotten"),
                *filler,
            ],
            namespace=NAMESPACE,
        )
        await store.remember("the lighthouse is in another namespace", namespace="elsewhere")
        await store.index()
        assert await _copies(connection) == 25  # "elsewhere" is small: never copied
        assert await _plan(store, sent, "lighthouse") == "copies"
        gone, old, red, changed, forgotten = [memory.id for memory in ids[:5]]
        await connection.execute(
            "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = $1", gone
        )
        await store.invalidate(old, reason="moved inland")
        await store.update(changed, content="the beacon was painted last spring")
        await store.forget([forgotten])
        # The text change dropped the row's copy and its flag; the delete its copy.
        assert (
            await connection.fetchval("SELECT vector_copied FROM memories WHERE id = $1", changed)
            is False
        )
        assert await _copies(connection) == 23
        orphans = await connection.fetchval(
            "SELECT count(*) FROM memory_vectors v WHERE NOT EXISTS (SELECT 1 FROM memories m "
            "WHERE m.namespace = v.namespace AND m.id = v.id AND m.vector_copied "
            "AND m.embedding = v.embedding AND m.space_id = v.space_id)"
        )
        assert orphans == 0

        for _ in range(2):  # before the changed row is copied again, and after
            hits = await store.recall("the lighthouse", namespace=NAMESPACE, k=25, mode="vector")
            contents = {hit.content for hit in hits}
            assert "the lighthouse keeper feeds the gulls" not in contents  # expired
            assert "the lighthouse stands on the northern cape" not in contents  # invalid
            assert "the lighthouse keeper retired" not in contents  # forgotten
            assert "the beacon was painted last spring" in contents
            assert len(hits.hits) == 22
            best = await store.recall(
                "the beacon was painted last spring", namespace=NAMESPACE, k=1, mode="vector"
            )
            assert best.hits[0].content == "the beacon was painted last spring"
            everything = await store.recall(
                "the lighthouse", namespace=NAMESPACE, k=25, mode="vector", include_invalid=True
            )
            assert "the lighthouse stands on the northern cape" in {h.content for h in everything}
            await store.index()
        assert await _copies(connection) == 24
        # A filter scans the rows (copies would be probed one by one); it holds there.
        assert await _plan(store, sent, "lighthouse", filter={"lamp": "red"}) == "rows"
        lamp = await store.recall("x", namespace=NAMESPACE, mode="vector", filter={"lamp": "red"})
        assert [hit.id for hit in lamp] == [red]
    finally:
        await store.close()


async def test_a_past_validity_scans_the_rows(migrated_dsn: str) -> None:
    sent: list[LoggedQuery] = []
    store = await _open(migrated_dsn, min_rows=5, sent=sent)
    try:
        start = datetime.now(UTC) - timedelta(days=10)
        await store.remember(
            [
                MemoryInput(
                    "the ferry leaves at noon",
                    valid_from=start,
                    valid_until=start + timedelta(days=5),
                ),
                *[MemoryInput(f"timetable entry {i}") for i in range(6)],
            ],
            namespace=NAMESPACE,
        )
        await store.index()
        now = await store.recall("the ferry leaves at noon", namespace=NAMESPACE, mode="vector")
        assert "the ferry leaves at noon" not in {hit.content for hit in now}
        past = await store.recall(
            "the ferry leaves at noon",
            namespace=NAMESPACE,
            k=1,
            mode="vector",
            valid_at=start + timedelta(days=1),
        )
        assert [hit.content for hit in past] == ["the ferry leaves at noon"]
        assert await _plan(store, sent, "ferry", valid_at=start) == "rows"
        assert await _plan(store, sent, "ferry") == "copies"
    finally:
        await store.close()


async def test_a_model_switch_and_its_rollback_drop_the_copies_of_the_old_space(
    migrated_dsn: str, connection: asyncpg.Connection, ollama: OllamaStandin
) -> None:
    old = await _open(migrated_dsn, min_rows=10)
    texts = [f"harbour log entry {i} on tide {i % 7}" for i in range(40)]
    new_settings = store_settings(
        worker=False,
        vector_copy_min_rows=10,
        embedder="ollama",
        ollama_url=ollama.url,
        embed_model="nomic-embed-text",
        space_recheck_seconds=0.2,
    )
    try:
        await old.remember(texts, namespace=NAMESPACE)
        await old.index()
        assert await _copies(connection) == len(texts)
        async with await SpaceMover.open(new_settings, dsn=migrated_dsn) as mover:
            await mover.begin()
            await mover.build()
            await mover.switch()
            # The switch dropped every copy of the old space (384 values) and copied the new
            # space's vectors again, without waiting for a worker.
            dimensions = await connection.fetch(
                "SELECT DISTINCT vector_dims(embedding) AS n FROM memory_vectors"
            )
            assert [row["n"] for row in dimensions] == [768]
            assert await _copies(connection) == len(texts)
            new = await MemoryStore.open(new_settings, dsn=migrated_dsn)
            try:
                found = await new.recall(texts[5], namespace=NAMESPACE, k=1, mode="vector")
                assert found.hits[0].content == texts[5]
                await mover.switch(rollback=True)
                assert await _copies(connection) == len(texts)
            finally:
                await new.close()
        await asyncio.sleep(0.3)  # the old process reads the active space again
        for _ in range(2):
            found = await old.recall(texts[7], namespace=NAMESPACE, k=1, mode="vector")
            assert found.hits[0].content == texts[7]
            await old.index()
        stale = await connection.fetchval(
            "SELECT count(*) FROM memory_vectors v JOIN memories m USING (namespace, id) "
            "WHERE v.embedding <> m.embedding OR v.space_id <> m.space_id"
        )
        assert stale == 0
        assert await _copies(connection) == len(texts)
    finally:
        await old.close()
