"""Export, then import into a fresh database: the same memories, every field; vectors reused
in the same space (no embed call), embedded afresh in another; read in bounded pages."""

from __future__ import annotations

import dataclasses
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from pgrecall import Embedding, EmbeddingSpace, InvalidInputError, MemoryInput, MemoryStore
from pgrecall.db.pool import create_pool
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.ingest.context import ContextWindow
from pgrecall.ingest.templates import AUTO_TEMPLATE, TextTemplates
from pgrecall.transfer.exporter import Exporter, ExportScope, export_total, write_export
from pgrecall.transfer.importer import import_lines

from .conftest import store_settings
from .fakes import HashEmbedder, text_vector

FIELDS = "namespace, content, metadata, key, expires_at, created_at"
EXPIRY = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
BORN = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


async def _open(dsn: str, embedder: HashEmbedder, **overrides: Any) -> MemoryStore:
    settings = store_settings(worker=False, auto_migrate=True, **overrides)
    return await MemoryStore.open(settings, dsn=dsn, embedder=embedder)


@pytest.fixture
async def source(migrated_dsn: str) -> AsyncIterator[MemoryStore]:
    store = await _open(migrated_dsn, HashEmbedder())
    await store.remember(
        [
            MemoryInput("Ada is allergic to peanuts.", metadata={"kind": "health", "n": 1.5}),
            MemoryInput("Ada lives in London.", key="home", expires_at=EXPIRY),
            MemoryInput("Ada was born in a leap year. \u00e9\u00e8 \U0001f600", created_at=BORN),
            MemoryInput('quotes " and \\ and\nnewlines', metadata={"nested": {"a": [1, None]}}),
        ],
        namespace="ada",
    )
    await store.remember("The release freezes on Friday.", namespace="team-blue", key="freeze")
    await store.remember("Bob likes chess.", namespace="bob")
    yield store
    await store.close()


async def _rows(dsn: str, columns: str = FIELDS) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(f"SELECT {columns} FROM memories ORDER BY namespace, content")
    finally:
        await connection.close()
    return [tuple(row.values()) for row in rows]


async def _export(store: MemoryStore, **options: Any) -> list[str]:
    sink = io.BytesIO()
    scope = options.pop("scope", None)
    await write_export(store.export(scope, **options), sink)
    return sink.getvalue().decode().splitlines(keepends=True)


async def test_every_field_survives_export_and_import_into_a_fresh_database(
    source: MemoryStore, migrated_dsn: str, empty_dsn: str
) -> None:
    lines = await _export(source)
    assert len(lines) == 6
    assert all("vector" not in json.loads(line) for line in lines)
    target = await _open(empty_dsn, HashEmbedder())
    try:
        report = await import_lines(target, lines, namespace=None)
    finally:
        await target.close()
    assert (report.stored, report.created, report.rejected) == (6, 6, [])
    before, after = await _rows(migrated_dsn), await _rows(empty_dsn)
    assert after == before
    born = [row for row in after if row[1].startswith("Ada was born")]
    assert born[0][5] == BORN
    keyed = [row for row in after if row[3] == "home"]
    assert keyed[0][4] == EXPIRY


async def test_with_vectors_the_same_space_embeds_nothing(
    source: MemoryStore, migrated_dsn: str, empty_dsn: str
) -> None:
    lines = await _export(source, with_vectors=True)
    space = json.loads(lines[0])["space"]
    assert space == {
        "kind": "test",
        "model": "hash-test",
        "dimensions": 384,
        "document_prefix": "",
        "query_prefix": "",
        "embedder_version": "",
        # the defaults' indexed text: the auto template with a one-memory context
        "text_template": ContextWindow("session", 1).identity(TextTemplates(AUTO_TEMPLATE)),
    }
    embedder = HashEmbedder()
    target = await _open(empty_dsn, embedder)
    try:
        report = await import_lines(target, lines, namespace=None)
        assert embedder.calls == 0
        hits = await target.recall(
            "Ada is allergic to peanuts.", namespace="ada", k=1, mode="vector"
        )
    finally:
        await target.close()
    assert (report.created, report.embedded_afresh) == (6, 0)
    columns = f"{FIELDS}, embedding, status"
    assert await _rows(empty_dsn, columns) == await _rows(migrated_dsn, columns)
    assert hits[0].content == "Ada is allergic to peanuts."


async def test_vectors_of_another_space_are_embedded_afresh(
    source: MemoryStore, empty_dsn: str
) -> None:
    lines = await _export(source, with_vectors=True)
    embedder = HashEmbedder(model="another-model")
    target = await _open(empty_dsn, embedder)
    try:
        report = await import_lines(target, lines, namespace=None)
        recorded = (await target.stats()).space
    finally:
        await target.close()
    assert report.embedded_afresh == 6
    assert embedder.texts_embedded == 6
    assert recorded is not None
    assert recorded.model == "another-model"
    statuses = await _rows(empty_dsn, "status, space_id")
    assert statuses == [("embedded", 1)] * 6


async def test_a_template_is_part_of_the_space(source: MemoryStore, empty_dsn: str) -> None:
    lines = await _export(source, with_vectors=True)
    embedder = HashEmbedder()
    target = await _open(empty_dsn, embedder, index_template="{kind} {content}")
    try:
        report = await import_lines(target, lines, namespace=None)
    finally:
        await target.close()
    assert report.embedded_afresh == 6
    assert embedder.texts_embedded == 6


async def test_reimporting_into_the_same_store_changes_nothing(
    source: MemoryStore, migrated_dsn: str
) -> None:
    lines = await _export(source, with_vectors=True)
    before = await _rows(migrated_dsn, f"{FIELDS}, updated_at, id")
    report = await import_lines(source, lines, namespace=None)
    assert (report.stored, report.created) == (6, 0)
    assert await _rows(migrated_dsn, f"{FIELDS}, updated_at, id") == before


async def test_a_memory_already_stored_is_remembered_again_and_keeps_its_creation_time(
    source: MemoryStore, empty_dsn: str
) -> None:
    lines = await _export(source)
    target = await _open(empty_dsn, HashEmbedder())
    try:
        await target.remember("Ada lives in Paris.", namespace="ada", key="home")
        await target.remember(
            "Ada is allergic to peanuts.", namespace="ada", metadata={"source": "target"}
        )
        kept = await _rows(empty_dsn, "key, content, created_at")
        report = await import_lines(target, lines, namespace=None)
    finally:
        await target.close()
    assert (report.stored, report.created) == (6, 4)
    after = {row[1]: row for row in await _rows(empty_dsn)}
    home = after["Ada lives in London."]  # keyed: the line's text, metadata and expiry
    assert (home[3], home[4]) == ("home", EXPIRY)
    assert home[5] == next(row[2] for row in kept if row[0] == "home")
    assert "Ada lives in Paris." not in after
    allergy = after["Ada is allergic to peanuts."]  # unkeyed: metadata merged
    assert json.loads(allergy[2]) == {"source": "target", "kind": "health", "n": 1.5}
    assert allergy[5] == next(row[2] for row in kept if row[0] is None)


async def test_a_scope_exports_its_namespaces_only(source: MemoryStore) -> None:
    def namespaces(lines: list[str]) -> set[str]:
        return {json.loads(line)["namespace"] for line in lines}

    assert namespaces(await _export(source)) == {"ada", "bob", "team-blue"}
    assert namespaces(await _export(source, scope=ExportScope.of(["bob", "nobody"]))) == {"bob"}
    prefixed = ExportScope(names=("bob",), prefixes=("team-",))
    assert namespaces(await _export(source, scope=prefixed)) == {"bob", "team-blue"}
    assert export_total(await source.stats(), prefixed) == 2
    with pytest.raises(InvalidInputError, match="namespace"):
        ExportScope.of([""])


async def test_expired_memories_are_not_exported(source: MemoryStore) -> None:
    # Expired means gone to every read; an export that kept them would bring them back on import.
    past = datetime.now(UTC) - timedelta(seconds=1)
    await source.remember("The old door code is 1234.", namespace="ada", expires_at=past)
    contents = {json.loads(line)["content"] for line in await _export(source)}
    assert "The old door code is 1234." not in contents
    assert "Ada lives in London." in contents


async def test_bad_vectors_are_refused_naming_the_problem(source: MemoryStore) -> None:
    space = source.space
    short = MemoryInput("x", namespace="ada", embedding=Embedding(space, [1.0]))
    with pytest.raises(InvalidInputError, match="1 dimensions, its space 384"):
        await source.remember([short])
    long = MemoryInput("x", namespace="ada", embedding=Embedding(space, [1.0] * 384))
    with pytest.raises(InvalidInputError, match="unit length"):
        await source.remember([long])
    nan = MemoryInput("x", namespace="ada", embedding=Embedding(space, [float("nan")] * 384))
    with pytest.raises(InvalidInputError, match="finite"):
        await source.remember([nan])
    lines = [
        '{"content": "a", "namespace": "n", "vector": "AAAA"}',
        '{"content": "a", "namespace": "n", "vector": "@@", "space": '
        + json.dumps(_space_json(space))
        + "}",
        '{"content": "a", "namespace": "n", "vector": "AAAA", "space": '
        + json.dumps(_space_json(space))
        + "}",
        '{"content": "a", "namespace": "n", "vector": "AAAA", "space": {"kind": 1}}',
        '{"content": "a", "namespace": "n", "created_at": "yesterday"}',
        '{"content": "a", "namespace": "n", "created_at": "2024-01-01T00:00:00"}',
    ]
    report = await import_lines(source, lines, namespace=None)
    reasons = [rejected.reason for rejected in report.rejected]
    assert reasons == [
        '"vector" and "space" go together: give both or neither',
        '"vector" is not base64',
        '"vector" holds 3 bytes; its space has 384 dimensions (1536 bytes of float32)',
        '"space.kind" must be text',
        "created_at is not an ISO-8601 timestamp: 'yesterday'",
        "created_at must be a timezone-aware datetime",
    ]
    assert report.stored == 0


def _space_json(space: EmbeddingSpace) -> dict[str, object]:
    return dataclasses.asdict(space)


async def test_remember_takes_a_vector_of_its_space_as_given(migrated_dsn: str) -> None:
    embedder = HashEmbedder()
    store = await _open(migrated_dsn, embedder)
    try:
        given = text_vector("something else entirely").tolist()
        stored = await store.remember(
            [MemoryInput("a text", embedding=Embedding(store.space, given), created_at=BORN)],
            namespace="n",
        )
        memory = await store.get(stored[0].id)
    finally:
        await store.close()
    assert embedder.calls == 0
    assert (memory.status, memory.created_at, memory.updated_at) == ("embedded", BORN, BORN)
    vector = (await _rows(migrated_dsn, "embedding::real[]"))[0][0]
    assert vector == pytest.approx(given, abs=1e-7)


async def test_an_export_reads_bounded_pages_whatever_the_size(migrated_dsn: str) -> None:
    store = await _open(migrated_dsn, HashEmbedder())
    try:
        for namespace in ("big-a", "big-b"):
            texts = [f"{namespace} memory number {i}" for i in range(10_000)]
            await store.remember(texts, namespace=namespace)
        await store.remember("one more", namespace="small")
    finally:
        await store.close()
    pool = await create_pool(migrated_dsn, min_size=1, max_size=2, hnsw_ef_search=40)
    try:
        exporter = Exporter(pool, SpaceRegistry(pool), page_size=1000)
        sizes: list[tuple[str, int]] = []
        seen: set[tuple[str, str]] = set()
        async for page in exporter.pages(ExportScope.everything(), with_vectors=True):
            assert len({memory.namespace for memory in page}) == 1
            sizes.append((str(page[0].namespace), len(page)))
            seen.update((str(memory.namespace), memory.content) for memory in page)
        assert sizes == [("big-a", 1000)] * 10 + [("big-b", 1000)] * 10 + [("small", 1)]
        assert len(seen) == 20_001

        # Streaming lines with vectors holds about a page, whatever the size of the export.
        async def peak_of(scope: ExportScope) -> tuple[int, int, int]:
            written = 0

            class Counting(io.RawIOBase):
                def write(self, chunk: Any) -> int:
                    nonlocal written
                    written += len(chunk)
                    return len(chunk)

            tracemalloc.start()
            try:
                count = await write_export(exporter.pages(scope, with_vectors=True), Counting())
                return count, written, tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        half = await peak_of(ExportScope.of(["big-a"]))
        count, written, peak = await peak_of(ExportScope.everything())
    finally:
        await pool.close()
    assert (half[0], count) == (10_000, 20_001)
    assert written > 40_000_000
    assert peak < 1.25 * half[2], (peak, half)
    assert peak < written / 3, (peak, written)


async def test_memories_written_before_the_export_are_all_in_it_once(migrated_dsn: str) -> None:
    store = await _open(migrated_dsn, HashEmbedder())
    try:
        same_time = datetime.now(UTC) - timedelta(days=1)
        await store.remember(
            [MemoryInput(f"tie {i}", created_at=same_time) for i in range(25)], namespace="ties"
        )
        pool = await create_pool(migrated_dsn, min_size=1, max_size=2, hnsw_ef_search=40)
        try:
            exporter = Exporter(pool, SpaceRegistry(pool), page_size=4)
            contents = [
                memory.content
                async for page in exporter.pages(ExportScope.of(["ties"]))
                for memory in page
            ]
        finally:
            await pool.close()
    finally:
        await store.close()
    assert sorted(contents) == sorted(f"tie {i}" for i in range(25))
