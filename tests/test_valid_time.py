"""Valid time (issue 20, point 3): when a fact is true in the world, as the agent says;
``valid_at`` recall, ``invalidate`` without deleting, ``include_invalid``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgrecall import InvalidInputError, MemoryInput, MemoryStore, NotFoundError

Y2020 = datetime(2020, 1, 1, tzinfo=UTC)
Y2024 = datetime(2024, 1, 1, tzinfo=UTC)


async def _contents(store: MemoryStore, query: str, **options: object) -> list[str]:
    hits = await store.recall(query, namespace="ada", mode="keyword", **options)  # type: ignore[arg-type]
    return sorted(hit.content for hit in hits)


@pytest.mark.engines
async def test_valid_at_keeps_the_facts_valid_then(store: MemoryStore) -> None:
    await store.remember(
        "Ada lived in London", namespace="ada", valid_from=Y2020, valid_until=Y2024
    )
    await store.remember("Ada lives in Paris", namespace="ada", valid_from=Y2024)
    await store.remember("Ada likes tea", namespace="ada")

    assert await _contents(store, "Ada", valid_at=Y2020 + timedelta(days=400)) == [
        "Ada likes tea",
        "Ada lived in London",
    ]
    assert await _contents(store, "Ada", valid_at=Y2024 + timedelta(days=1)) == [
        "Ada likes tea",
        "Ada lives in Paris",
    ]
    # By default a fact whose validity ended is left out; include_invalid brings it back.
    assert await _contents(store, "Ada") == ["Ada likes tea", "Ada lives in Paris"]
    assert await _contents(store, "Ada", include_invalid=True) == [
        "Ada likes tea",
        "Ada lived in London",
        "Ada lives in Paris",
    ]
    hit = (await store.recall("London", namespace="ada", mode="keyword", include_invalid=True))[0]
    assert (hit.valid_from, hit.valid_until) == (Y2020, Y2024)


@pytest.mark.engines
async def test_invalidate_ends_a_fact_without_deleting_it(store: MemoryStore) -> None:
    memory = await store.remember("Ada works at the mill", namespace="ada", key="job")
    before = await store.recall("mill", namespace="ada", mode="keyword")
    assert [hit.id for hit in before] == [memory.id]

    ended = await store.invalidate(memory.id, reason="she left in spring")
    assert ended.invalid_reason == "she left in spring"
    assert ended.valid_until is not None
    assert ended.valid_until <= datetime.now(UTC)
    assert (await store.recall("mill", namespace="ada", mode="keyword")).hits == ()
    again = await store.recall("mill", namespace="ada", mode="keyword", include_invalid=True)
    assert [hit.id for hit in again] == [memory.id]
    assert (await store.get(memory.id)).content == "Ada works at the mill"
    # Valid at a time before it ended.
    earlier = await store.recall(
        "mill", namespace="ada", mode="keyword", valid_at=ended.valid_until - timedelta(hours=1)
    )
    assert [hit.id for hit in earlier] == [memory.id]
    # Stating it again states it anew: valid, and the reason gone.
    await store.remember("Ada works at the mill", namespace="ada", key="job")
    renewed = await store.get(memory.id)
    assert (renewed.valid_until, renewed.invalid_reason) == (None, None)


async def test_invalidate_in_the_future_keeps_it_valid_until_then(store: MemoryStore) -> None:
    memory = await store.remember("The shop is open", namespace="ada")
    await store.invalidate(memory.id, at=datetime.now(UTC) + timedelta(days=1))
    assert len(await store.recall("shop", namespace="ada", mode="keyword")) == 1


async def test_bad_valid_times_are_refused_and_nothing_is_stored(store: MemoryStore) -> None:
    with pytest.raises(InvalidInputError, match="valid_from must come before valid_until"):
        await store.remember("x", namespace="ada", valid_from=Y2024, valid_until=Y2020)
    with pytest.raises(InvalidInputError, match=r"valid_until.*item 1"):
        await store.remember(
            [MemoryInput("fine"), MemoryInput("naive", valid_until=datetime(2024, 1, 1))],
            namespace="ada",
        )
    with pytest.raises(NotFoundError):
        await store.recall("x", namespace="ada")
    memory = await store.remember("Ada rides", namespace="ada", valid_from=Y2024)
    with pytest.raises(InvalidInputError, match="valid_from"):
        await store.invalidate(memory.id, at=Y2020)
    assert (await store.get(memory.id)).valid_until is None
    with pytest.raises(NotFoundError):
        await store.invalidate("00000000-0000-7000-8000-000000000000")
