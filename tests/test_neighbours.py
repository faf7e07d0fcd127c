"""recall(neighbours=n): each hit comes with the memories around it in its thread."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.errors import ConfigurationError, InvalidInputError

from .conftest import store_settings

SESSION_1 = [
    "Did you go anywhere on Friday?",
    "Yes, to Lisbon, by the night train.",
    "How long did it take?",
    "Nine hours, but I slept most of it.",
]
SESSION_2 = ["The bakery downstairs sells pastel de nata now.", "Lisbon memories!"]


@pytest.mark.engines
async def test_hits_come_with_their_neighbours_in_their_thread(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    store = await MemoryStore.open(
        store_settings(context_key="session"), dsn=migrated_dsn, embedder=local_embedder
    )
    try:
        for session, turns in ((1, SESSION_1), (2, SESSION_2)):
            await store.remember(
                [MemoryInput(text, metadata={"session": session}) for text in turns],
                namespace="chat",
            )
        await store.remember("Lisbon has seven hills.", namespace="chat")  # no thread
        # Contextual indexing puts a turn's words into the next turn's indexed text too, so a
        # word of the last turn of a session finds that turn alone.
        plain = await store.recall("slept", namespace="chat", mode="keyword", k=10)
        assert [hit.content for hit in plain] == [SESSION_1[3]]
        around = await store.recall("slept", namespace="chat", mode="keyword", k=10, neighbours=1)
        # The hit, then the turn before it (there is none after it in its session).
        assert [hit.content for hit in around] == [SESSION_1[3], SESSION_1[2]]
        assert {hit.score for hit in around} == {plain[0].score}
        assert around[1].keyword_score is None
        assert around[1].metadata == {"session": 1}
        wider = await store.recall("slept", namespace="chat", mode="keyword", k=10, neighbours=2)
        assert [hit.content for hit in wider] == [SESSION_1[3], SESSION_1[2], SESSION_1[1]]
        cut = await store.recall(
            "slept", namespace="chat", mode="keyword", k=2, neighbours=2
        )  # nearest first, within k
        assert [hit.content for hit in cut] == [SESSION_1[3], SESSION_1[2]]

        # Turns after a hit too, each memory once: "Friday" finds the first turn and the second
        # (its context); the second brings the third.
        friday = await store.recall("Friday", namespace="chat", mode="keyword", k=10)
        with_around = await store.recall(
            "Friday", namespace="chat", mode="keyword", k=10, neighbours=1
        )
        contents = [hit.content for hit in with_around]
        assert contents[0] == friday[0].content
        assert sorted(contents) == sorted(SESSION_1[:3])

        # A hit without the thread key comes alone.
        hills = await store.recall("hills", namespace="chat", mode="keyword", k=10, neighbours=1)
        assert [hit.content for hit in hills] == ["Lisbon has seven hills."]
    finally:
        await store.close()


@pytest.mark.engines
async def test_an_invalidated_turn_is_no_neighbour_unless_the_recall_includes_it(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    store = await MemoryStore.open(
        store_settings(context_key="session"), dsn=migrated_dsn, embedder=local_embedder
    )
    try:
        turns = await store.remember(
            [MemoryInput(text, metadata={"session": 1}) for text in SESSION_1], namespace="chat"
        )
        await store.invalidate(turns[2].id, namespace="chat", reason="misheard")
        around = await store.recall("slept", namespace="chat", mode="keyword", k=10, neighbours=1)
        # The turn before the hit is invalid: the recall's valid-time rule leaves it out, as it
        # would leave out a hit, and the nearest valid turn takes its place.
        assert [hit.content for hit in around] == [SESSION_1[3], SESSION_1[1]]
        everything = await store.recall(
            "slept", namespace="chat", mode="keyword", k=10, neighbours=1, include_invalid=True
        )
        assert [hit.content for hit in everything] == [SESSION_1[3], SESSION_1[2]]
    finally:
        await store.close()


async def test_neighbours_are_checked(store: MemoryStore) -> None:
    await store.remember("one", namespace="chat", metadata={"session": 1})
    for bad in (-1, 9, True, 1.5):
        with pytest.raises(InvalidInputError, match="neighbours"):
            await store.recall("one", namespace="chat", neighbours=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="as_of"):
        await store.recall("one", namespace="chat", neighbours=1, as_of=datetime.now(UTC))


async def test_the_store_setting_gives_neighbours_unless_the_recall_says(
    migrated_dsn: str, local_embedder: LocalEmbedder
) -> None:
    store = await MemoryStore.open(
        store_settings(context_key="session", recall_neighbours=1),
        dsn=migrated_dsn,
        embedder=local_embedder,
    )
    try:
        await store.remember(
            [MemoryInput(text, metadata={"session": 1}) for text in SESSION_1], namespace="chat"
        )
        default = await store.recall("slept", namespace="chat", mode="keyword")
        assert [hit.content for hit in default] == [SESSION_1[3], SESSION_1[2]]
        alone = await store.recall("slept", namespace="chat", mode="keyword", neighbours=0)
        assert [hit.content for hit in alone] == [SESSION_1[3]]
        past = await store.recall(
            "slept", namespace="chat", mode="keyword", as_of=datetime.now(UTC)
        )
        assert [hit.content for hit in past] == [SESSION_1[3]]  # no neighbours as of a time
    finally:
        await store.close()


@pytest.mark.parametrize("value", ["-1", "9", "x"])
def test_a_bad_neighbours_setting_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="RECALL_NEIGHBOURS"):
        store_settings(recall_neighbours=value)
