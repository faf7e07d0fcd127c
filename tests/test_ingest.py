"""Ingestion's write path on a real PostgreSQL: new memories copied in, the rest upserted."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgrecall import MemoryInput, MemoryStore
from pgrecall.db.pool import create_pool
from pgrecall.db.vectors import vector_binary
from pgrecall.ingest.ids import new_ids
from pgrecall.ingest.plan import COLUMN_NAMES, Columns, arrays, chunk_bounds, column_types, rows
from pgrecall.ingest.service import IngestionService
from pgrecall.ingest.sql import (
    COPY_COLUMNS,
    FIND_EXISTING,
    FIND_UNCHANGED,
    UPSERT_BY_CONTENT,
    UPSERT_BY_KEY,
)

from .conftest import store_settings
from .fakes import DIMENSIONS, HashEmbedder

# Engine-sensitive: each test using a database runs on PostgreSQL and on Citus (conftest.py).
pytestmark = pytest.mark.engines

CHUNK = 8  # small chunks: a call of a few dozen memories crosses several


@pytest.fixture
async def chunked(migrated_dsn: str) -> AsyncIterator[MemoryStore]:
    opened = await MemoryStore.open(
        store_settings(ingest_chunk_size=CHUNK), dsn=migrated_dsn, embedder=HashEmbedder()
    )
    yield opened
    await opened.close()


async def _rows(dsn: str, namespace: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(
            "SELECT id, key, content, status, embedding IS NOT NULL AS embedded "
            "FROM memories WHERE namespace = $1",
            namespace,
        )
    finally:
        await connection.close()


async def test_a_call_across_chunks_keeps_its_order_ids_and_vectors(
    chunked: MemoryStore, migrated_dsn: str
) -> None:
    texts = [f"observation number {i}" for i in range(5 * CHUNK + 3)]
    results = await chunked.remember(texts, namespace="log")
    assert all(result.created and result.status == "embedded" for result in results)
    rows = {row["id"]: row for row in await _rows(migrated_dsn, "log")}
    assert [rows[result.id]["content"] for result in results] == texts
    assert all(row["embedded"] for row in rows.values())
    page = await chunked.list("log", limit=len(texts))
    assert [memory.content for memory in page.memories] == list(reversed(texts))


async def test_repeats_in_different_chunks_of_one_call(
    chunked: MemoryStore, migrated_dsn: str
) -> None:
    fillers = [MemoryInput(f"filler {i}") for i in range(3 * CHUNK)]
    items = [
        MemoryInput("The user lives in Paris.", key="home"),
        MemoryInput("Ada likes tea."),
        *fillers,
        MemoryInput("The user lives in Rome.", key="home"),
        MemoryInput("Ada likes tea."),
    ]
    results = await chunked.remember(items, namespace="n")
    assert results[0].id == results[-2].id
    assert results[1].id == results[-1].id
    assert results[0].created
    assert results[1].created
    rows = await _rows(migrated_dsn, "n")
    assert len(rows) == len(fillers) + 2
    home = [row for row in rows if row["key"] == "home"]
    assert [row["content"] for row in home] == ["The user lives in Rome."]


async def test_one_text_twice_in_a_chunk_ends_as_after_two_calls(chunked: MemoryStore) -> None:
    first = MemoryInput("Ada likes tea.", metadata={"source": "chat", "sure": False})
    second = MemoryInput("Ada likes tea.", metadata={"sure": True}, expires_at=EXPIRY)
    together = await chunked.remember([first, second], namespace="one")
    await chunked.remember([first], namespace="two")
    await chunked.remember([second], namespace="two")
    assert together[0].id == together[1].id
    one = await chunked.get(together[0].id)
    two = (await chunked.list("two")).memories[0]
    assert one.metadata == two.metadata == {"source": "chat", "sure": True}
    assert one.expires_at == two.expires_at == EXPIRY


async def test_a_writer_storing_the_same_memory_between_lookup_and_copy(
    chunked: MemoryStore, migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=HashEmbedder())
    raced: list[str] = []
    service: IngestionService = chunked._ingest
    lookup = service._lookup

    async def lookup_then_race(chunk: object, space_id: int, unsettled: object) -> object:
        missing = await lookup(chunk, space_id, unsettled)  # type: ignore[arg-type]
        if not raced:
            # Another process stores the chunk's first memory before this one writes it.
            raced.append(str((await other.remember("contested", namespace="n")).id))
        return missing

    monkeypatch.setattr(service, "_lookup", lookup_then_race)
    try:
        texts = ["contested", *[f"uncontested {i}" for i in range(CHUNK - 1)]]
        results = await chunked.remember(texts, namespace="n")
    finally:
        await other.close()
    assert str(results[0].id) == raced[0]
    assert not results[0].created
    assert all(result.created for result in results[1:])
    rows = await _rows(migrated_dsn, "n")
    assert sorted(row["content"] for row in rows) == sorted(texts)
    assert all(row["status"] == "embedded" and row["embedded"] for row in rows)


async def _versions(dsn: str, namespace: str) -> dict[str, tuple[object, ...]]:
    """Per content: the row's xmin (a new one with every written version), updated_at, metadata,
    expiry, status and attempts."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT content, xmin::text AS version, updated_at, metadata, expires_at, status, "
            "embed_attempts FROM memories WHERE namespace = $1",
            namespace,
        )
    finally:
        await connection.close()
    return {row["content"]: tuple(row.values())[1:] for row in rows}


async def _execute(dsn: str, sql: str, *args: object) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql, *args)
    finally:
        await connection.close()


EXPIRY = datetime(2040, 1, 1, tzinfo=UTC)
KNOWN = [
    MemoryInput("Ada likes tea.", metadata={"source": "chat", "topic": {"drink": "tea"}}),
    MemoryInput("Ada lives in Paris.", key="home", metadata={"source": "chat", "sure": True}),
    MemoryInput("The meeting is on Monday.", expires_at=EXPIRY),
    *(MemoryInput(f"filler {i}") for i in range(2 * CHUNK)),
]


async def test_remembering_what_is_stored_writes_no_row(
    chunked: MemoryStore, migrated_dsn: str
) -> None:
    first = await chunked.remember(KNOWN, namespace="n")
    before = await _versions(migrated_dsn, "n")
    again = await chunked.remember(KNOWN, namespace="n")
    assert [result.id for result in again] == [result.id for result in first]
    assert all(not result.created and result.status == "embedded" for result in again)
    # Metadata the merge already holds changes nothing either.
    subset = await chunked.remember("Ada likes tea.", namespace="n", metadata={"source": "chat"})
    assert subset.id == first[0].id
    assert await _versions(migrated_dsn, "n") == before  # same row versions, same updated_at


@pytest.mark.parametrize(
    ("content", "change"),
    [
        ("Ada likes tea.", MemoryInput("Ada likes tea.", metadata={"mood": "good"})),
        # The merge is shallow: a nested object is replaced, not merged.
        ("Ada likes tea.", MemoryInput("Ada likes tea.", metadata={"topic": {}})),
        # A keyed memory's metadata is replaced: a subset of it is a change.
        (
            "Ada lives in Paris.",
            MemoryInput("Ada lives in Paris.", key="home", metadata={"source": "chat"}),
        ),
        ("The meeting is on Monday.", MemoryInput("The meeting is on Monday.")),
    ],
)
async def test_remembering_a_change_writes_the_row(
    chunked: MemoryStore, migrated_dsn: str, content: str, change: MemoryInput
) -> None:
    await chunked.remember(KNOWN, namespace="n")
    before = await _versions(migrated_dsn, "n")
    await chunked.remember([change], namespace="n")
    after = await _versions(migrated_dsn, "n")
    assert after[content][0] != before[content][0]  # a new version of that row
    assert after[content][1] > before[content][1]  # updated_at moved
    assert {c: v for c, v in after.items() if c != content} == {
        c: v for c, v in before.items() if c != content
    }


async def test_remembering_an_unsettled_row_writes_it(
    chunked: MemoryStore, migrated_dsn: str
) -> None:
    first = await chunked.remember(KNOWN, namespace="n")
    await _execute(
        migrated_dsn,
        "UPDATE memories SET embed_attempts = 2 WHERE id = $1",
        first[1].id,
    )
    await _execute(
        migrated_dsn,
        "UPDATE memories SET status = 'pending', embedding = NULL, space_id = NULL WHERE id = $1",
        first[2].id,
    )
    again = await chunked.remember(KNOWN[:3], namespace="n")
    assert [result.status for result in again] == ["embedded"] * 3
    after = await _versions(migrated_dsn, "n")
    assert after["Ada lives in Paris."][4:] == ("embedded", 0)  # its attempts were reset
    assert after["The meeting is on Monday."][4:] == ("embedded", 0)  # embedded now


async def test_a_later_item_of_the_call_wins_over_its_earlier_change(
    chunked: MemoryStore, migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await chunked.remember(KNOWN, namespace="n")
    service: IngestionService = chunked._ingest
    write = service._write

    async def slow_write(*args: Any) -> bool:
        await asyncio.sleep(0.05)  # later chunks are looked up before this one is written
        return await write(*args)

    monkeypatch.setattr(service, "_write", slow_write)
    fillers = [MemoryInput(f"more filler {i}") for i in range(CHUNK)]
    home, tea = KNOWN[1], KNOWN[0]
    changes = [
        MemoryInput("Ada lives in Rome.", key="home"),
        replace(tea, metadata={"source": "x"}),
    ]
    # Chunks of 2, 8 and 2: the changes open the second, the items as stored fill the third.
    items = [*fillers[:2], *changes, *fillers[2:], home, tea]
    assert chunk_bounds(len(items), CHUNK) == [(0, 2), (2, 10), (10, 12)]
    results = await chunked.remember(items, namespace="n")
    assert results[2].id == results[-2].id
    rows = await _rows(migrated_dsn, "n")
    assert [row["content"] for row in rows if row["key"] == "home"] == ["Ada lives in Paris."]
    after = await _versions(migrated_dsn, "n")
    assert json.loads(str(after["Ada lives in Paris."][2])) == home.metadata
    assert json.loads(str(after["Ada likes tea."][2]))["source"] == "chat"


def _watch_writes(service: IngestionService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Slow every chunk's write a little and log when each starts and ends, by its first
    memory's text."""
    log: list[str] = []
    write = service._write

    async def watched(chunk: Any, *args: Any) -> bool:
        name = chunk.unique[0].content
        log.append(f"start {name}")
        await asyncio.sleep(0.03)
        try:
            return await write(chunk, *args)
        finally:
            log.append(f"end {name}")

    monkeypatch.setattr(service, "_write", watched)
    return log


def _most_at_once(log: list[str]) -> int:
    running = most = 0
    for event in log:
        running += 1 if event.startswith("start") else -1
        most = max(most, running)
    return most


@pytest.mark.parametrize("writers", [1, 2, 3])
async def test_chunks_of_a_call_are_written_concurrently_in_input_order(
    migrated_dsn: str, monkeypatch: pytest.MonkeyPatch, writers: int
) -> None:
    store = await MemoryStore.open(
        store_settings(ingest_chunk_size=CHUNK, ingest_concurrent_writes=writers),
        dsn=migrated_dsn,
        embedder=HashEmbedder(),
    )
    try:
        log = _watch_writes(store._ingest, monkeypatch)
        texts = [f"observation number {i}" for i in range(6 * CHUNK)]
        connection = await asyncpg.connect(migrated_dsn)
        try:
            before = await connection.fetchval("SELECT clock_timestamp()")
            results = await store.remember(texts, namespace="log")
            after = await connection.fetchval("SELECT clock_timestamp()")
            rows = await connection.fetch(
                "SELECT id, created_at, updated_at FROM memories WHERE namespace = 'log'"
            )
        finally:
            await connection.close()
    finally:
        await store.close()
    assert _most_at_once(log) == writers
    stamps = {row["id"]: (row["created_at"], row["updated_at"]) for row in rows}
    created = [stamps[result.id][0] for result in results]
    assert created == sorted(created)
    assert len(set(created)) == len(texts)  # strictly increasing in input order
    assert before <= created[0]
    assert created[-1] <= after
    assert all(created_at == updated_at for created_at, updated_at in stamps.values())


async def test_a_chunk_sharing_memories_with_a_write_in_flight_waits_for_it(
    chunked: MemoryStore, migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _watch_writes(chunked._ingest, monkeypatch)
    first = [
        MemoryInput("Ada likes tea.", metadata={"said": 1, "first": True}),
        MemoryInput("Bob likes coffee.", metadata={"said": 1}),
        MemoryInput("Ada lives in Paris.", key="home"),
        *(MemoryInput(f"filler {i}") for i in range(CHUNK - 3)),
    ]
    second = [  # the same memories in another order: concurrent copies would deadlock
        MemoryInput("Ada lives in Rome.", key="home"),
        MemoryInput("Bob likes coffee.", metadata={"said": 2}),
        MemoryInput("Ada likes tea.", metadata={"said": 2}),
        *(MemoryInput(f"other filler {i}") for i in range(CHUNK - 3)),
    ]
    items = [MemoryInput("opening"), MemoryInput("opening too"), *first, *second]
    assert chunk_bounds(len(items), CHUNK)[1:3] == [(2, 10), (10, 16)]
    results = await chunked.remember(items, namespace="n")
    # The second chunk opens with "Ada likes tea.", the third with "Ada lives in Rome.".
    assert log.index("start Ada lives in Rome.") > log.index("end Ada likes tea.")
    assert results[2].id == results[12].id
    assert not results[12].created
    tea = await chunked.get(results[2].id)
    assert tea.metadata == {"said": 2, "first": True}
    coffee = await chunked.get(results[3].id)
    assert coffee.metadata == {"said": 2}
    rows = await _rows(migrated_dsn, "n")
    assert [row["content"] for row in rows if row["key"] == "home"] == ["Ada lives in Rome."]
    assert len(rows) == len(items) - 3


async def test_a_failed_write_stops_the_call_with_nothing_left_running(
    chunked: MemoryStore, migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service: IngestionService = chunked._ingest
    write = service._write
    finished: list[str] = []

    async def second_fails(chunk: Any, *args: Any) -> bool:
        name = chunk.unique[0].content
        if name == "observation 2":  # the second chunk: (0, 2), (2, 10), (10, 18), ...
            raise RuntimeError("the disk is full")
        await asyncio.sleep(0.1)
        written = await write(chunk, *args)
        finished.append(name)
        return written

    monkeypatch.setattr(service, "_write", second_fails)
    texts = [f"observation {i}" for i in range(5 * CHUNK)]
    with pytest.raises(RuntimeError, match="the disk is full"):
        await chunked.remember(texts, namespace="log")
    await asyncio.sleep(0.3)  # a write left running would finish by now
    assert finished == ["observation 0"]  # the third chunk's write was under way, and stopped
    assert sorted(row["content"] for row in await _rows(migrated_dsn, "log")) == texts[:2]


@given(count=st.integers(0, 3000), size=st.integers(1, 600))
def test_chunks_cover_the_input_in_order_with_short_ends(count: int, size: int) -> None:
    bounds = chunk_bounds(count, size)
    assert [index for start, end in bounds for index in range(start, end)] == list(range(count))
    assert all(0 < end - start <= size for start, end in bounds)
    edge = max(1, size // 4)
    if bounds:
        assert bounds[0][1] - bounds[0][0] <= edge
        assert bounds[-1][1] - bounds[-1][0] <= edge


def _distinct_row(tag: str, key: str | None, space_id: int) -> Columns:
    """One row whose every column holds a value no other column holds (the texts each name
    their column), so a value written into another column cannot read back as expected."""
    created = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    return {
        "id": new_ids(1),
        "namespace": [f"namespace-{tag}"],
        "key": [key],
        "content": [f"content-{tag}"],
        "content_hash": [hashlib.sha256(f"content-hash-{tag}".encode()).digest()],
        "metadata": [json.dumps({"metadata": tag})],
        "embedding": [vector_binary([1.0] + [0.0] * (DIMENSIONS - 1))],
        "space_id": [space_id],
        "expires_at": [datetime(2999, 6, 7, tzinfo=UTC)],
        "status": ["embedded"],
        "embed_error": [f"embed-error-{tag}"],
        "search_text": [f"search-text-{tag}"],
        "created_at": [created],
        "updated_at": [created],
        "valid_from": [datetime(2001, 1, 1, tzinfo=UTC)],
        "valid_until": [datetime(2002, 2, 2, tzinfo=UTC)],
    }


async def test_every_column_of_the_spec_is_written_where_it_is_named(migrated_dsn: str) -> None:
    """The COPY and both upserts (inserting) write each value of the spec's columns into the
    column of its name: a statement whose columns or arrays were out of the spec's order fails
    here."""
    pool = await create_pool(migrated_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            space_id = await connection.fetchval(
                "INSERT INTO embedding_spaces (kind, model, dimensions, document_prefix, "
                "query_prefix, embedder_version) VALUES ('test', 'm', $1, '', '', '') "
                "RETURNING id",
                DIMENSIONS,
            )
            copied = _distinct_row("copied", "key-copied", space_id)
            await connection.copy_records_to_table(
                "memories", records=rows(copied), columns=COPY_COLUMNS
            )
            by_content = _distinct_row("by-content", None, space_id)
            by_key = _distinct_row("by-key", "key-upserted", space_id)
            for sql, columns in ((UPSERT_BY_CONTENT, by_content), (UPSERT_BY_KEY, by_key)):
                returned = await connection.fetch(sql, *arrays(columns))
                assert [row["inserted"] for row in returned] == [True]
            for expected in (copied, by_content, by_key):
                stored = await connection.fetchrow(
                    f"SELECT {', '.join(COLUMN_NAMES)} FROM memories WHERE id = $1",
                    expected["id"][0],
                )
                assert stored is not None
                read = {name: stored[name] for name in COLUMN_NAMES}
                read["metadata"] = json.loads(read["metadata"])
                read["embedding"] = vector_binary(read["embedding"].to_list())
                want: dict[str, object] = {name: values[0] for name, values in expected.items()}
                want["metadata"] = json.loads(expected["metadata"][0])
                assert read == want
    finally:
        await pool.close()


def test_the_upserts_take_the_spec_columns_in_its_order() -> None:
    """Each upsert's column list and its typed unnest arrays follow Row, one for one."""
    columns = ", ".join(COLUMN_NAMES)
    arrays = ", ".join(
        f"${n}::{sql_type}[]" for n, sql_type in enumerate(column_types().values(), start=1)
    )
    for statement in (UPSERT_BY_CONTENT, UPSERT_BY_KEY):
        # then embed_after, which carries the statement's clock (ingest/sql.py CLOCK)
        assert f"INSERT INTO memories ({columns}, embed_after)" in statement
        assert f"unnest({arrays}) AS incoming({columns})" in statement
    assert column_types()["content_hash"] == "bytea"
    assert column_types()["embedding"] == "vector"


async def test_a_chunk_across_namespaces_finds_each_ones_known_memories(
    chunked: MemoryStore, migrated_dsn: str
) -> None:
    # The lookups are asked one namespace at a time; a chunk mixing them still finds each
    # namespace's own rows, keyed and unkeyed, and never another namespace's same text.
    items = [
        MemoryInput("Ada likes tea.", namespace="left"),
        MemoryInput("Ada likes tea.", namespace="right"),
        MemoryInput("The user lives in Paris.", key="home", namespace="right"),
        MemoryInput("Bob likes coffee.", namespace="left"),
    ]
    first = await chunked.remember(items, namespace="default")
    assert [result.created for result in first] == [True, True, True, True]
    again = [
        MemoryInput("Ada likes tea.", namespace="right"),
        MemoryInput("Ada likes tea.", namespace="third"),
        MemoryInput("The user lives in Rome.", key="home", namespace="right"),
        MemoryInput("Bob likes coffee.", namespace="left"),
    ]
    second = await chunked.remember(again, namespace="default")
    assert [result.created for result in second] == [False, True, False, False]
    assert [result.id for result in second] == [
        first[1].id,
        second[1].id,
        first[2].id,
        first[3].id,
    ]
    assert {row["content"] for row in await _rows(migrated_dsn, "right")} == {
        "Ada likes tea.",
        "The user lives in Rome.",
    }


def _rows_read(node: dict[str, Any]) -> int:
    """Rows the plan's scans of ``memories`` returned or filtered out, over all their loops."""
    own = 0
    if node.get("Relation Name") == "memories":
        removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Join Filter", 0)
        own = round((node["Actual Rows"] + removed) * node["Actual Loops"])
    return own + sum(_rows_read(child) for child in node.get("Plans", []))


async def test_the_known_memory_lookup_probes_a_new_namespace_row_by_row(
    pg_migrated_dsn: str,
) -> None:
    # The statistics of a store holding one large namespace estimate one row for a namespace
    # they have not seen; a join then read that namespace once per wanted row (380 ms for 400
    # wanted rows in 5,000). The lookup must read at most one row per wanted memory. (Plain
    # PostgreSQL only: on Citus the coordinator's plan does not show the shard's scans.)
    store = await MemoryStore.open(store_settings(), dsn=pg_migrated_dsn, embedder=HashEmbedder())
    try:
        await store.remember([f"old memory {i}" for i in range(3000)], namespace="large")
        connection = await asyncpg.connect(pg_migrated_dsn)
        try:
            await connection.execute("ANALYZE memories")
            await store.remember([f"new memory {i}" for i in range(600)], namespace="new")
            wanted = [f"new memory {i}" for i in range(500, 700)]
            hashes = await connection.fetch(
                "SELECT content, content_hash FROM memories WHERE namespace = 'new'"
            )
            known = {row["content"]: row["content_hash"] for row in hashes}
            content_hashes = [
                known.get(text, hashlib.sha256(text.encode()).digest()) for text in wanted
            ]
            count = len(wanted)
            space = await connection.fetchval("SELECT min(id) FROM embedding_spaces")
            plan = await connection.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + FIND_EXISTING,
                ["new"] * count,
                content_hashes,
                [None] * count,
                space,
                [None] * count,
                "new",
            )
        finally:
            await connection.close()
    finally:
        await store.close()
    root = json.loads(plan)[0]["Plan"]
    assert 0 < _rows_read(root) <= count


def _indexes_scanned(node: dict[str, Any]) -> list[str]:
    """The indexes of every index scan in the plan."""
    own = [node["Index Name"]] if "Index Name" in node else []
    return own + [name for child in node.get("Plans", []) for name in _indexes_scanned(child)]


# EXPLAIN (GENERIC_PLAN) of a statement with parameters, run from SQL: the extended protocol
# would ask for their values.
_GENERIC_PLAN_FUNCTION = (
    "CREATE FUNCTION pg_temp.generic_plan(statement text) RETURNS SETOF json"
    " LANGUAGE plpgsql AS"
    " $$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN (GENERIC_PLAN, FORMAT JSON) ' || statement; END $$"
)


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_both_lookups_probe_the_unique_indexes_after_the_primary_key_is_rebuilt(
    pg_migrated_dsn: str, generic: bool
) -> None:
    # For a namespace the statistics have not seen (estimated at one row) the primary key, led
    # by the namespace, cost the same as the unique index of a probe by equality, and the
    # planner kept the index of the newer OID: after a REINDEX CONCURRENTLY of the primary key
    # each probe read the whole new namespace through it, filtering the text's hash.
    store = await MemoryStore.open(store_settings(), dsn=pg_migrated_dsn, embedder=HashEmbedder())
    try:
        # Unkeyed: the text's unique index then holds as many rows as the primary key.
        await store.remember([f"old memory {i}" for i in range(2000)], namespace="large")
    finally:
        await store.close()
    connection = await asyncpg.connect(pg_migrated_dsn)
    try:
        await connection.execute("VACUUM (ANALYZE) memories")
        await connection.execute("REINDEX INDEX CONCURRENTLY memories_pkey")
        count = 50
        wanted = (
            ["unseen"] * count,
            [bytes([n]) * 32 for n in range(count)],
            [f"k{n}" if n % 2 else None for n in range(count)],
            1,
            [None] * count,
        )
        unchanged = (["{}"] * count, *[[None] * count] * 3)
        if generic:
            # As the store runs them (ingest/service.py): a plan for any values.
            await connection.execute(_GENERIC_PLAN_FUNCTION)
            generic_plan = "SELECT * FROM pg_temp.generic_plan($1)"
            plans = [
                await connection.fetchval(generic_plan, FIND_EXISTING),
                await connection.fetchval(generic_plan, FIND_UNCHANGED),
            ]
        else:
            plans = [
                await connection.fetchval(
                    "EXPLAIN (FORMAT JSON) " + FIND_EXISTING, *wanted, "unseen"
                ),
                await connection.fetchval(
                    "EXPLAIN (FORMAT JSON) " + FIND_UNCHANGED, *wanted, *unchanged, "unseen"
                ),
            ]
    finally:
        await connection.close()
    for plan in plans:
        assert sorted(_indexes_scanned(json.loads(plan)[0]["Plan"])) == [
            "memories_namespace_content_hash_key",
            "memories_namespace_key_key",
        ]


async def test_the_lookups_run_generic_plans_from_the_first_call(pg_migrated_dsn: str) -> None:
    # Planned afresh, the lookup costs 0.5-0.9 ms more a call; PostgreSQL's own choice planned
    # every call in one moved state of the switch benchmark (benchmarks/RESULTS.md, issue 21).
    store = await MemoryStore.open(
        store_settings(pool_min_size=1, pool_max_size=1, worker=False),
        dsn=pg_migrated_dsn,
        embedder=HashEmbedder(),
    )
    try:
        for i in range(3):
            await store.remember(f"a memory {i}", namespace="one-a-call")
        await store.remember("a memory 0", namespace="one-a-call", metadata={"again": True})
        plans = await store._pool.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%WITH wanted AS%'"
            " AND statement NOT LIKE '%pg_prepared_statements%'"
        )
    finally:
        await store.close()
    counts = sorted((p["generic_plans"], p["custom_plans"]) for p in plans)
    # FIND_EXISTING four times, FIND_UNCHANGED once (the memory found again).
    assert counts == [(1, 0), (4, 0)], counts
