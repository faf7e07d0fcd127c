"""MemoryStore through its Python API on a real PostgreSQL."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import numpy as np
import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.errors import (
    ConflictError,
    DimensionMismatchError,
    EmbeddingSpaceMismatchError,
    InvalidFilterError,
    InvalidInputError,
    NotFoundError,
    SchemaError,
)
from pgrecall.validation import MAX_JSON_DEPTH

from .conftest import store_settings
from .fakes import HashEmbedder


async def _row_count(store: MemoryStore) -> int:
    return (await store.stats()).memories


# At the edges of Python's datetime range: in UTC they fall outside it.
EARLIEST_PLUS_ONE = datetime.fromisoformat("0001-01-01T00:00:00+01:00")
LATEST_MINUS_14 = datetime.fromisoformat("9999-12-31T23:59:59-14:00")


async def _update_first(store: MemoryStore, **change: object) -> None:
    first = (await store.list("a")).memories[0]
    await store.update(first.id, **change)  # type: ignore[arg-type]


def _cursor(stamp: str) -> str:
    return base64.urlsafe_b64encode(f"{stamp}|{uuid4()}".encode()).decode()


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def test_paraphrase_is_recalled_first(store: MemoryStore) -> None:
    await store.remember(
        [
            "The user's cat is called Miso.",
            "The quarterly report is due on Friday.",
            "The user moved from Berlin to Lisbon last spring.",
            "Use the staging database for experiments.",
        ],
        namespace="agent",
    )
    hits = await store.recall(
        "Which city does the user live in now?", namespace="agent", k=4, mode="vector"
    )
    assert hits[0].content == "The user moved from Berlin to Lisbon last spring."
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert all(-1.0 <= hit.score <= 1.0 for hit in hits)
    assert hits.exact


async def test_exact_ranking_equals_numpy(store: MemoryStore, migrated_dsn: str) -> None:
    texts = [f"note {i}: {word} {i % 13}" for i, word in enumerate(["alpha", "beta", "gamma"] * 40)]
    await store.remember(texts, namespace="bulk")
    query = "gamma 7"
    hits = await store.recall(query, namespace="bulk", k=25, exact=True, mode="vector")

    connection = await asyncpg.connect(migrated_dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, embedding::text AS vector FROM memories WHERE namespace = 'bulk'"
        )
    finally:
        await connection.close()
    ids = [row["id"] for row in rows]
    matrix = np.array([np.array(row["vector"][1:-1].split(","), dtype=np.float32) for row in rows])
    q = np.array((await store.embedder.embed_queries([query])).vectors[0], dtype=np.float32)
    scores = matrix @ q
    expected = [ids[i] for i in np.argsort(-scores, kind="stable")[:25]]
    assert [hit.id for hit in hits] == expected
    assert [hit.score for hit in hits] == pytest.approx(sorted(scores, reverse=True)[:25], abs=1e-5)


async def test_same_text_twice_is_one_memory(store: MemoryStore) -> None:
    first = await store.remember("Ada likes tea.", namespace="a", metadata={"source": "chat"})
    again = await store.remember("Ada likes tea.", namespace="a", metadata={"confidence": 0.9})
    batch = await store.remember(["Ada likes tea.", "Ada likes tea.", "new"], namespace="a")
    assert first.created
    assert not again.created
    assert again.id == first.id == batch[0].id == batch[1].id
    assert await _row_count(store) == 2
    memory = await store.get(first.id)
    assert memory.metadata == {"source": "chat", "confidence": 0.9}
    elsewhere = await store.remember("Ada likes tea.", namespace="b")
    assert elsewhere.id != first.id


async def test_external_key_upserts(store: MemoryStore) -> None:
    first = await store.remember("The user lives in Paris.", namespace="a", key="home")
    moved = await store.remember("The user lives in Rome.", namespace="a", key="home")
    assert moved.id == first.id
    assert not moved.created
    memory = await store.get(first.id)
    assert memory.content == "The user lives in Rome."
    assert memory.key == "home"
    hits = await store.recall("Where does the user live?", namespace="a", k=1)
    assert hits[0].content == "The user lives in Rome."
    assert await _row_count(store) == 1


async def test_reimport_embeds_nothing_again(migrated_dsn: str) -> None:
    embedder = HashEmbedder()
    store = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=embedder)
    try:
        texts = [f"memory {i}" for i in range(50)]
        await store.remember(texts, namespace="n")
        assert embedder.texts_embedded == 50
        again = await store.remember([*texts, "memory 50"], namespace="n")
        assert embedder.texts_embedded == 51
        assert sum(r.created for r in again) == 1
    finally:
        await store.close()


async def test_expired_memories_are_not_recalled(store: MemoryStore) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    future = datetime.now(UTC) + timedelta(days=1)
    await store.remember("The door code is 1234.", namespace="a", expires_at=past)
    await store.remember("The door code is 9876.", namespace="a", expires_at=future)
    hits = await store.recall("door code", namespace="a", k=5)
    assert [hit.content for hit in hits] == ["The door code is 9876."]


async def test_created_range_and_min_score(store: MemoryStore) -> None:
    await store.remember("The sky is blue.", namespace="a")
    cut = datetime.now(UTC)
    await store.remember("Grass is green.", namespace="a")
    later = await store.recall("colours", namespace="a", created_after=cut)
    assert [hit.content for hit in later] == ["Grass is green."]
    earlier = await store.recall("colours", namespace="a", created_before=cut)
    assert [hit.content for hit in earlier] == ["The sky is blue."]
    # e5 scores sit in a narrow band (0.85 against 0.79 here): min_score is per model.
    strict = await store.recall("What colour is the sky?", namespace="a", min_score=0.82)
    assert [hit.content for hit in strict] == ["The sky is blue."]


async def test_pagination_newest_first(store: MemoryStore) -> None:
    texts = [f"event {i}" for i in range(25)]
    await store.remember(texts[:10], namespace="log")
    await store.remember(texts[10:], namespace="log")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.list("log", limit=10, cursor=cursor)
        seen += [memory.content for memory in page.memories]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(texts))
    with pytest.raises(InvalidInputError, match="cursor"):
        await store.list("log", cursor="not-a-cursor")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.remember("", namespace="a"), InvalidInputError, "empty"),
        (lambda s: s.remember("   \n", namespace="a"), InvalidInputError, "whitespace"),
        (lambda s: s.remember("x" * 100_001, namespace="a"), InvalidInputError, "100001"),
        (lambda s: s.remember(["ok", ""], namespace="a"), InvalidInputError, "item 1"),
        (lambda s: s.remember("x", namespace=""), InvalidInputError, "namespace"),
        (lambda s: s.remember("x\x00y", namespace="a"), InvalidInputError, "NUL"),
        (lambda s: s.remember("x", namespace="a", metadata=[1]), InvalidInputError, "object"),
        (
            lambda s: s.remember("x", namespace="a", metadata={"v": float("nan")}),
            InvalidInputError,
            "plain JSON",
        ),
        (
            lambda s: s.remember("x", namespace="a", metadata={"k": ["ok", "\ud800"]}),
            InvalidInputError,
            "metadata holds a string that contains a lone surrogate",
        ),
        (
            lambda s: s.remember("x", namespace="a", metadata={"\udfff": 1}),
            InvalidInputError,
            "metadata holds a key that contains a lone surrogate",
        ),
        (
            lambda s: s.remember("x", namespace="a", metadata=_nested(MAX_JSON_DEPTH + 1)),
            InvalidInputError,
            f"deeper than {MAX_JSON_DEPTH} levels",
        ),
        (
            lambda s: s.remember("x", namespace="a", metadata=_nested(5000)),
            InvalidInputError,
            f"deeper than {MAX_JSON_DEPTH} levels",
        ),
        (
            lambda s: s.remember("x", namespace="a", expires_at=datetime(2030, 1, 1)),
            InvalidInputError,
            "timezone",
        ),
        (
            lambda s: s.recall("q", namespace="a", filter={"kind": {"like": "x"}}),
            InvalidFilterError,
            "unknown operator 'like'",
        ),
        (lambda s: s.recall("q", namespace="a", filter={"and": {}}), InvalidFilterError, "list"),
        (lambda s: s.recall("q", namespace="nobody"), NotFoundError, "nobody"),
        (lambda s: s.recall("q", namespace="a", k=0), InvalidInputError, "k must"),
        (
            lambda s: s.recall("q", namespace="a", vector_weight=5e-324),
            InvalidInputError,
            "vector_weight must be 0 or",
        ),
        (
            lambda s: s.recall("q", namespace="a", keyword_weight=1e-300),
            InvalidInputError,
            "keyword_weight must be 0 or",
        ),
        (lambda s: s.recall("", namespace="a"), InvalidInputError, "empty"),
        (lambda s: s.recall("ab " * 350_000, namespace="a"), InvalidInputError, "query has"),
        (lambda s: s.recall("q\x00", namespace="a"), InvalidInputError, "query contains a NUL"),
        (
            lambda s: s.recall("q\udc80", namespace="a"),
            InvalidInputError,
            "query contains a lone surrogate",
        ),
        (
            lambda s: s.remember(["ok", "x\ud800"], namespace="a"),
            InvalidInputError,
            "content contains a lone surrogate.*item 1",
        ),
        (lambda s: s.get("not-a-uuid"), InvalidInputError, "UUID"),
        (
            lambda s: s.recall("q", namespace="a", created_after=EARLIEST_PLUS_ONE),
            InvalidInputError,
            "created_after .* is out of range",
        ),
        (
            lambda s: s.recall("q", namespace="a", created_before=LATEST_MINUS_14),
            InvalidInputError,
            "created_before .* is out of range",
        ),
        (
            lambda s: _update_first(s, expires_at=LATEST_MINUS_14),
            InvalidInputError,
            "expires_at .* is out of range",
        ),
        (
            lambda s: s.list("a", cursor=_cursor(EARLIEST_PLUS_ONE.isoformat())),
            InvalidInputError,
            "cursor",
        ),
        (lambda s: s.list("a", cursor=_cursor("2020-01-01T00:00:00")), InvalidInputError, "cursor"),
        (lambda s: s.get(uuid4()), NotFoundError, "no memory"),
        (lambda s: s.forget(namespace="a"), InvalidInputError, "filter"),
    ],
)
async def test_bad_input_is_a_typed_error_and_changes_nothing(
    store: MemoryStore, call: object, error: type[Exception], message: str
) -> None:
    await store.remember(["kept one", "kept two"], namespace="a")
    with pytest.raises(error, match=message):
        await call(store)  # type: ignore[operator]
    assert await _row_count(store) == 2


async def test_update_re_embeds_and_guards_conflicts(store: MemoryStore) -> None:
    memory = await store.remember("Meeting on Monday.", namespace="a", metadata={"v": 1})
    await store.remember("Lunch at noon.", namespace="a")
    updated = await store.update(memory.id, content="Meeting moved to Thursday.", metadata={"v": 2})
    assert updated.content == "Meeting moved to Thursday."
    assert updated.metadata == {"v": 2}
    assert updated.updated_at > updated.created_at
    hits = await store.recall("When is the meeting?", namespace="a", k=1)
    assert hits[0].content == "Meeting moved to Thursday."
    with pytest.raises(ConflictError, match="already holds"):
        await store.update(memory.id, content="Lunch at noon.")
    assert (await store.get(memory.id)).content == "Meeting moved to Thursday."
    expiring = await store.update(memory.id, expires_at=datetime.now(UTC) + timedelta(days=1))
    assert expiring.expires_at is not None
    cleared = await store.update(memory.id, expires_at=None)
    assert cleared.expires_at is None


async def test_a_duplicate_text_is_the_callers_conflict_not_an_error_log(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A 409 is the client's mistake: it may be logged for an operator, not as a warning or an
    error (which alert, and reach a CLI's stderr as a second line)."""
    memory = await store.remember("Meeting on Monday.", namespace="a")
    await store.remember("Lunch at noon.", namespace="a")
    caplog.set_level(logging.DEBUG, logger="pgrecall")
    with pytest.raises(ConflictError, match="already holds"):
        await store.update(memory.id, content="Lunch at noon.")
    loud = [
        r for r in caplog.records if r.name.startswith("pgrecall") and r.levelno >= logging.WARNING
    ]
    assert loud == []
    assert (await store.get(memory.id)).content == "Meeting on Monday."


async def test_forget_by_ids_and_by_filter(store: MemoryStore) -> None:
    kept, gone = await store.remember(["keep me", "drop me"], namespace="a")
    await store.remember(["temp 1", "temp 2"], namespace="a", metadata={"temporary": True})
    assert await store.forget([gone.id]) == 1
    assert await store.forget(namespace="a", filter={"temporary": True}) == 2
    assert [m.content for m in (await store.list("a")).memories] == ["keep me"]
    assert await store.forget([kept.id], namespace="other") == 0
    assert await store.forget(namespace="a", filter={}) == 1


async def test_stats_per_namespace(store: MemoryStore) -> None:
    await store.remember(["a1", "a2"], namespace="a")
    await store.remember("b1", namespace="b")
    stats = await store.stats()
    assert (stats.memories, stats.embedded) == (3, 3)
    assert [(n.namespace, n.memories) for n in stats.namespaces] == [("a", 2), ("b", 1)]
    assert stats.space is not None
    assert stats.space.model == "multilingual-e5-small-q4"
    assert (await store.stats(namespace="b")).memories == 1


async def test_another_embedding_space_is_refused(store: MemoryStore, migrated_dsn: str) -> None:
    await store.remember("built with the local model", namespace="a")
    other = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=HashEmbedder())
    try:
        with pytest.raises(EmbeddingSpaceMismatchError) as caught:
            await other.remember("from another model", namespace="a")
        message = str(caught.value)
        assert "local:multilingual-e5-small-q4" in message
        assert "test:hash-test" in message
        with pytest.raises(EmbeddingSpaceMismatchError):
            await other.recall("anything", namespace="a")
    finally:
        await other.close()
    assert await _row_count(store) == 1


async def test_open_checks_schema_and_vector_size(
    empty_dsn: str, migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    with pytest.raises(SchemaError, match="pgrecall migrate"):
        await MemoryStore.open(store_settings(), dsn=empty_dsn, embedder=local_embedder)
    wrong_size = store_settings(embedder="ollama", embed_model="nomic-embed-text")
    with pytest.raises(DimensionMismatchError, match=r"vector\(384\)"):
        await MemoryStore.open(wrong_size, dsn=migrated_dsn)
    migrating = await MemoryStore.open(
        store_settings(auto_migrate=True), dsn=empty_dsn, embedder=local_embedder
    )
    await migrating.close()


async def test_batch_items_carry_their_own_fields(store: MemoryStore) -> None:
    results = await store.remember(
        [
            MemoryInput("first", namespace="x", metadata={"n": 1}),
            MemoryInput("second", key="k2"),
            "third",
        ],
        namespace="y",
        metadata={"batch": True},
    )
    assert [r.namespace for r in results] == ["x", "y", "y"]
    assert (await store.get(results[0].id)).metadata == {"n": 1}
    second = await store.get(results[1].id)
    assert (second.key, second.metadata) == ("k2", {"batch": True})
