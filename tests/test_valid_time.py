"""Valid time (issue 20, point 3): when a fact is true in the world, as the agent says;
``valid_at`` recall, ``invalidate`` without deleting, ``include_invalid``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from pgrecall import ConflictError, InvalidInputError, MemoryInput, MemoryStore, NotFoundError

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


@pytest.mark.engines
async def test_an_invalid_fact_keeps_its_first_end(store: MemoryStore) -> None:
    memory = await store.remember("Ada works at the mill", namespace="ada")
    first = await store.invalidate(memory.id, at=Y2024, reason="she left")
    for at in (None, Y2024 - timedelta(days=1), Y2024 + timedelta(days=1)):
        with pytest.raises(ConflictError, match="already invalid since 2024-01-01") as caught:
            await store.invalidate(memory.id, at=at, reason="left again")
        assert str(memory.id) in str(caught.value)
    kept = await store.get(memory.id)
    assert (kept.valid_until, kept.invalid_reason, kept.version) == (
        Y2024,
        "she left",
        first.version,
    )
    assert [version.valid_until for version in await store.history(memory.id)] == [Y2024]
    # The audit records changes: the one invalidation.
    actions = [entry.action for entry in await store.audit("ada", memory=memory.id)]
    assert actions == ["invalidate", "create"]


async def test_an_end_still_to_come_may_be_moved(store: MemoryStore) -> None:
    memory = await store.remember("The shop is open", namespace="ada")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    await store.invalidate(memory.id, at=tomorrow, reason="closing")
    ended = await store.invalidate(memory.id, reason="closed early")
    assert ended.valid_until is not None
    assert ended.valid_until < tomorrow
    assert ended.invalid_reason == "closed early"


async def test_an_end_before_the_start_is_the_callers_mistake_not_an_error_log(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    memory = await store.remember("Ada rides", namespace="ada", valid_from=Y2024)
    caplog.set_level(logging.DEBUG, logger="pgrecall")
    with pytest.raises(InvalidInputError, match="valid_from"):
        await store.invalidate(memory.id, at=Y2020)
    loud = [r for r in caplog.records if r.name.startswith("pgrecall") and r.levelno >= 30]
    assert loud == []


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
