"""Dialogue memories: the ``auto`` indexed text (who and when), stores built before it, and
contextual indexing (a turn indexed with the turns before it in its thread)."""

from __future__ import annotations

import asyncpg
import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.errors import ConfigurationError, EmbeddingSpaceMismatchError
from pgrecall.ingest.context import Threaded, indexed_texts

from .conftest import store_settings

TURNS = [
    ("Caroline", "8 May 2023", "I went to a support group yesterday and it was so powerful."),
    ("Melanie", "8 May 2023", "That sounds great. I painted a sunrise last week."),
    ("Caroline", "25 May 2023", "I am researching adoption agencies now."),
]


async def _remember_turns(store: MemoryStore) -> None:
    for speaker, date, text in TURNS:
        await store.remember(
            text, namespace="chat", metadata={"speaker": speaker, "session_date": date}
        )


async def test_default_indexes_speaker_and_date_and_returns_the_content(
    store: MemoryStore,
) -> None:
    await _remember_turns(store)
    hits = await store.recall("What did Melanie do?", namespace="chat", mode="keyword")
    assert [hit.content for hit in hits] == [TURNS[1][2]]  # the name is only in the metadata
    hits = await store.recall("news from 25 May", namespace="chat", mode="keyword")
    assert hits[0].content == TURNS[2][2]
    plain = await store.recall("painted sunrise", namespace="chat", k=1)
    assert plain[0].content == TURNS[1][2]  # stored and returned exactly as given


async def test_a_store_built_before_auto_keeps_indexing_the_content_alone(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    legacy = store_settings(index_template="{content}", context_key="")  # as built before
    store = await MemoryStore.open(legacy, dsn=migrated_dsn, embedder=local_embedder)
    try:
        await store.remember("first", namespace="chat", metadata={"speaker": "Ada"})
    finally:
        await store.close()
    # Opened later with no template configured: it goes on as it was built, and opens.
    store = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=local_embedder)
    try:
        await store.remember("second", namespace="chat", metadata={"speaker": "Ada"})
        hits = await store.recall("Ada", namespace="chat", mode="keyword")
        assert hits.hits == ()  # the speaker was not indexed
        assert store.space.text_template == ""
    finally:
        await store.close()
    # Asking for auto or a context there is refused: its memories would be of two kinds.
    for asked in ({"context_key": "session"}, {"index_template": "auto", "context_key": ""}):
        store = await MemoryStore.open(
            store_settings(**asked), dsn=migrated_dsn, embedder=local_embedder
        )
        try:
            with pytest.raises(EmbeddingSpaceMismatchError, match="template"):
                await store.remember("third", namespace="chat", metadata={"speaker": "Ada"})
        finally:
            await store.close()


async def test_a_store_with_a_template_and_no_context_opens_as_before(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    built = store_settings(index_template="{speaker}: {content}", context_key="")
    store = await MemoryStore.open(built, dsn=migrated_dsn, embedder=local_embedder)
    try:
        await store.remember("first", namespace="chat", metadata={"speaker": "Ada", "session": 1})
    finally:
        await store.close()
    again = store_settings(index_template="{speaker}: {content}")  # context not configured
    store = await MemoryStore.open(again, dsn=migrated_dsn, embedder=local_embedder)
    try:
        second = {"speaker": "Bo", "session": 1}
        await store.remember("second", namespace="chat", metadata=second)
        assert (await _search_texts(migrated_dsn))["second"] == "Bo: second"  # no context
    finally:
        await store.close()


async def _keyword(store: MemoryStore, query: str) -> list[str]:
    hits = await store.recall(query, namespace="chat", mode="keyword", k=10)
    return sorted(hit.content for hit in hits)


async def _search_texts(dsn: str) -> dict[str, str | None]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT content, search_text FROM memories")
    finally:
        await connection.close()
    return {row["content"]: row["search_text"] for row in rows}


@pytest.mark.engines
async def test_context_indexes_a_turn_with_the_one_before_it_in_its_thread(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    settings = store_settings(context_key="session")
    store = await MemoryStore.open(settings, dsn=migrated_dsn, embedder=local_embedder)
    try:
        s1 = {"speaker": "Ada", "session": 1}
        await store.remember(
            [
                MemoryInput("Where did you go on Friday?", metadata=s1),
                MemoryInput("To Lisbon, by train.", metadata={**s1, "speaker": "Bo"}),
            ],
            namespace="chat",
        )
        await store.remember("It was lovely.", namespace="chat", metadata=s1)  # a later call
        await store.remember("Friday is my day off.", namespace="chat", metadata={"session": 2})
        await store.remember("No thread here.", namespace="chat")
        # One call across namespaces: each turn's context comes from its own namespace.
        await store.remember("Hello from elsewhere.", namespace="elsewhere", metadata=s1)
        await store.remember(
            [
                MemoryInput("Bye.", metadata=s1, namespace="elsewhere"),
                MemoryInput("See you.", metadata=s1, namespace="chat"),
            ]
        )
        texts = await _search_texts(migrated_dsn)
        assert texts["Where did you go on Friday?"] == "Ada: Where did you go on Friday?"
        assert texts["To Lisbon, by train."] == (
            "Ada: Where did you go on Friday?\nBo: To Lisbon, by train."
        )
        assert texts["It was lovely."] == "Bo: To Lisbon, by train.\nAda: It was lovely."
        assert texts["Friday is my day off."] is None  # first of its thread
        assert texts["No thread here."] is None
        assert texts["Bye."] == "Ada: Hello from elsewhere.\nAda: Bye."
        assert texts["See you."] == "Ada: It was lovely.\nAda: See you."
        # The answer shares no word with the question; its context does.
        assert "To Lisbon, by train." in await _keyword(store, "Friday trip?")
        # Remembered again once later turns exist: its context stays, nothing is rewritten.
        again = await store.remember(
            "To Lisbon, by train.", namespace="chat", metadata={**s1, "speaker": "Bo"}
        )
        assert not again.created
        assert (await _search_texts(migrated_dsn))["To Lisbon, by train."] == (
            "Ada: Where did you go on Friday?\nBo: To Lisbon, by train."
        )
        # An update re-indexes the new text with the same context.
        memory = await store.update(again.id, content="To Porto, by train.")
        assert memory.content == "To Porto, by train."
        assert (await _search_texts(migrated_dsn))["To Porto, by train."] == (
            "Ada: Where did you go on Friday?\nBo: To Porto, by train."
        )
        hits = await store.recall("Porto", namespace="chat", k=1)
        assert hits[0].content == "To Porto, by train."  # re-embedded and returned as given
    finally:
        await store.close()
    # The context is part of the indexed text, so of the space: a store without it refuses.
    plain = await MemoryStore.open(
        store_settings(context_key=""), dsn=migrated_dsn, embedder=local_embedder
    )
    try:
        with pytest.raises(EmbeddingSpaceMismatchError):
            await plain.remember("another", namespace="chat")
    finally:
        await plain.close()


class _CountingPool:
    """A real connection's ``fetch``, counting how many memories each lookup asks about (one
    lookup per namespace: $1 the namespace, $2 the memories' threads)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.asked: list[int] = []

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.asked.append(len(args[1]))  # type: ignore[arg-type]
        return await self.connection.fetch(query, *args)


async def test_a_thread_written_in_one_call_is_looked_up_once_per_window_place(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    store = await MemoryStore.open(
        store_settings(context_key="session", context_window=2),
        dsn=migrated_dsn,
        embedder=local_embedder,
    )
    try:
        s1 = {"speaker": "Ada", "session": 1}
        await store.remember(["one", "two"], namespace="chat", metadata=s1)
        turns = [("three", 1), ("elsewhere", 2), ("four", 1), ("five", 1), ("six", 1)]
        memories = [
            Threaded("chat", text, {"speaker": "Ada", "session": session}, text.encode(), None)
            for text, session in turns
        ]
        connection = await asyncpg.connect(migrated_dsn)
        try:
            pool = _CountingPool(connection)
            texts = await indexed_texts(
                pool,  # type: ignore[arg-type]
                store.templates,
                store.context,  # type: ignore[arg-type]
                memories,
            )
        finally:
            await connection.close()
    finally:
        await store.close()
    # The first two turns of session 1 and the one of session 2 reach stored rows; "five" and
    # "six" take their whole window from the call, so they are not asked about.
    assert pool.asked == [3]
    assert texts == [
        "Ada: one\nAda: two\nAda: three",
        "Ada: elsewhere",
        "Ada: two\nAda: three\nAda: four",
        "Ada: three\nAda: four\nAda: five",
        "Ada: four\nAda: five\nAda: six",
    ]


@pytest.mark.parametrize("window", ["0", "9", "x"])
def test_a_bad_context_window_is_refused(window: str) -> None:
    with pytest.raises(ConfigurationError, match="PGRECALL_CONTEXT_WINDOW"):
        store_settings(context_key="session", context_window=window)
