"""Hybrid recall: keyword + vector, fused; templates; boosts."""

from __future__ import annotations

import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.errors import EmbeddingSpaceMismatchError

from .conftest import store_settings

MEMORIES = [
    "Zorblatt confirmed the shipment leaves on Thursday.",
    "The physician prescribed antibiotics for the infection.",
    "Our quarterly revenue grew by eight percent.",
    "The team enjoyed the offsite in the mountains.",
    "Please water the plants in the office every Monday.",
    "The printer on the third floor is out of toner.",
]


@pytest.fixture
async def filled(store: MemoryStore) -> MemoryStore:
    await store.remember(
        [MemoryInput(text, metadata={"n": i}) for i, text in enumerate(MEMORIES)],
        namespace="team",
    )
    await store.remember("Zorblatt is also a name in another namespace.", namespace="other")
    return store


async def _contents(store: MemoryStore, query: str, **options: object) -> list[str]:
    hits = await store.recall(query, namespace="team", k=3, **options)  # type: ignore[arg-type]
    return [hit.content for hit in hits]


@pytest.mark.engines
async def test_a_rare_name_is_found_by_keyword_and_hybrid(filled: MemoryStore) -> None:
    query = "What did Zorblatt tell us?"
    assert (await _contents(filled, query, mode="keyword"))[0] == MEMORIES[0]
    assert MEMORIES[0] in await _contents(filled, query, mode="hybrid")


@pytest.mark.engines
async def test_a_paraphrase_without_shared_words_is_found_by_vector_and_hybrid(
    filled: MemoryStore,
) -> None:
    query = "doctor gave medicine"
    assert MEMORIES[1] in await _contents(filled, query, mode="vector")
    assert MEMORIES[1] in await _contents(filled, query, mode="hybrid")
    assert MEMORIES[1] not in await _contents(filled, query, mode="keyword")


@pytest.mark.engines
async def test_modes_report_their_scores(filled: MemoryStore) -> None:
    vector = await filled.recall("shipment Thursday", namespace="team", mode="vector")
    assert vector.mode == "vector"
    assert all(h.keyword_score is None and h.score == h.vector_score for h in vector)
    keyword = await filled.recall("shipment Thursday", namespace="team", mode="keyword")
    assert keyword.mode == "keyword"
    assert [h.content for h in keyword] == [MEMORIES[0]]
    assert keyword[0].score == keyword[0].keyword_score
    assert keyword[0].vector_score is None
    hybrid = await filled.recall("shipment Thursday", namespace="team")
    assert hybrid.mode == "hybrid"
    top = hybrid[0]
    assert top.content == MEMORIES[0]
    assert top.vector_score is not None
    assert top.keyword_score is not None
    # Best first by the fused score (its formulas: test_fusion.py).
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


async def test_weights_change_the_order_as_documented(filled: MemoryStore) -> None:
    query = "the office plants and the printer"
    vector_order = [h.id for h in await filled.recall(query, namespace="team", mode="vector", k=6)]
    keyword_order = [
        h.id for h in await filled.recall(query, namespace="team", mode="keyword", k=6)
    ]
    only_vector = await filled.recall(query, namespace="team", k=6, keyword_weight=0)
    assert [h.id for h in only_vector][: len(vector_order)] == vector_order
    only_keyword = await filled.recall(query, namespace="team", k=6, vector_weight=0)
    assert [h.id for h in only_keyword][: len(keyword_order)] == keyword_order


@pytest.mark.engines
async def test_filters_and_namespaces_hold_in_every_mode(filled: MemoryStore) -> None:
    for mode in ("vector", "keyword", "hybrid"):
        hits = await filled.recall(
            "Zorblatt shipment", namespace="team", mode=mode, filter={"n": {"gte": 1}}, k=6
        )
        assert MEMORIES[0] not in [h.content for h in hits]
        assert {h.namespace for h in hits} <= {"team"}
        others = await filled.recall("Zorblatt", namespace="other", mode=mode)
        assert {h.namespace for h in others} == {"other"}


@pytest.mark.parametrize(
    "query",
    [
        "a & b",
        "a | b",
        "!not",
        "prefix:*",
        "'single' \"double\"",
        "back\\slash \\\\",
        "'; DROP TABLE memories; --",
        "(((",
        "<-> <2> ::: @@",
        "!!! &&& |||",
        "what does https://en.wikipedia.org/wiki/O'Reilly_Media say",
        "see http://x.example/a'b\\c'' and 'http://y.example/it''s'",
    ],
)
async def test_query_syntax_never_errors_nor_injects(filled: MemoryStore, query: str) -> None:
    for mode in ("keyword", "hybrid"):
        await filled.recall(query, namespace="team", mode=mode)
    assert (await filled.stats()).memories == len(MEMORIES) + 1


async def test_a_lexeme_holding_a_quote_is_matched_as_written(
    store: MemoryStore,
) -> None:
    url = "https://en.wikipedia.org/wiki/O'Reilly_Media"
    await store.remember(
        [f"The history of the publisher is at {url}.", "Publishers print books."], namespace="web"
    )
    hits = await store.recall(f"what does {url} say", namespace="web", mode="keyword")
    assert [hit.content for hit in hits] == [f"The history of the publisher is at {url}."]


async def test_template_indexes_metadata_and_keeps_content(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    settings = store_settings(index_template="{speaker}: {content}")
    store = await MemoryStore.open(settings, dsn=migrated_dsn, embedder=local_embedder)
    try:
        await store.remember(
            "I love hiking in the Alps.", namespace="chat", metadata={"speaker": "Caroline"}
        )
        await store.remember(
            "I prefer the beach.", namespace="chat", metadata={"speaker": "Melanie"}
        )
        hits = await store.recall("What does Caroline enjoy?", namespace="chat", mode="keyword")
        assert [h.content for h in hits] == ["I love hiking in the Alps."]
        memory = await store.get(hits[0].id)
        assert memory.content == "I love hiking in the Alps."
    finally:
        await store.close()
    plain = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=local_embedder)
    try:
        with pytest.raises(EmbeddingSpaceMismatchError, match="template"):
            await plain.remember("another", namespace="chat")
    finally:
        await plain.close()


@pytest.mark.engines
async def test_keyword_search_finds_pending_memories_and_hybrid_degrades(
    migrated_dsn: str,
) -> None:
    settings = store_settings(
        embedder="ollama",
        embed_model="all-minilm",
        ollama_url="http://127.0.0.1:9",
        ollama_max_attempts=1,
        worker=False,
    )
    store = await MemoryStore.open(settings, dsn=migrated_dsn)
    try:
        result = await store.remember("Quillfeather renewed the lease.", namespace="down")
        assert result.pending
        keyword = await store.recall("Quillfeather lease", namespace="down", mode="keyword")
        assert [h.content for h in keyword] == ["Quillfeather renewed the lease."]
        hybrid = await store.recall("Quillfeather lease", namespace="down")
        assert hybrid.degraded
        assert hybrid.mode == "keyword"
        assert [h.content for h in hybrid] == ["Quillfeather renewed the lease."]
    finally:
        await store.close()


@pytest.mark.engines
async def test_recency_importance_and_diversity(store: MemoryStore, migrated_dsn: str) -> None:
    old = await store.remember("Standup notes: deploy went fine.", namespace="b")
    await store.remember("Standup notes: deploy went fine again.", namespace="b")
    await store.remember(
        "Standup notes: the deploy went fine today.", namespace="b", metadata={"importance": 1}
    )
    await store.remember("Lunch menu: pasta and salad.", namespace="b")
    import asyncpg

    connection = await asyncpg.connect(migrated_dsn)
    try:
        await connection.execute(
            "UPDATE memories SET created_at = now() - interval '30 days' WHERE id = $1", old.id
        )
    finally:
        await connection.close()
    query = "how did the deploy go?"
    plain = await store.recall(query, namespace="b", k=4, mode="vector")
    recent = await store.recall(query, namespace="b", k=4, mode="vector", recency_half_life=86400)
    assert [h.id for h in recent][-1] == old.id or recent[-1].content.startswith("Lunch")
    assert old.id not in [h.id for h in recent][:2]
    important = await store.recall(
        query, namespace="b", k=4, mode="vector", importance="importance"
    )
    assert important[0].content == "Standup notes: the deploy went fine today."
    diverse = await store.recall(query, namespace="b", k=2, mode="vector", diversity=0.9)
    assert "Lunch menu: pasta and salad." in [h.content for h in diverse]
    assert "Lunch menu: pasta and salad." not in [h.content for h in plain][:2]
