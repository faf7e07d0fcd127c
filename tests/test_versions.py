"""Memories that change (issue 20): versions kept outside the recall scan, history, as-of reads,
and forget that leaves no version behind."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from pgrecall import InvalidInputError, MemoryStore, NotFoundError

Clock = Callable[[], Awaitable[datetime]]


@pytest.fixture
def clock(migrated_dsn: str) -> Clock:
    """The database's clock (version spans are stamped by it), a few ms apart from writes."""

    async def read() -> datetime:
        await asyncio.sleep(0.01)
        connection = await asyncpg.connect(migrated_dsn)
        try:
            value: datetime = await connection.fetchval("SELECT clock_timestamp()")
        finally:
            await connection.close()
        await asyncio.sleep(0.01)
        return value

    return read


@pytest.mark.engines
async def test_a_changed_keyed_memory_keeps_its_previous_version(
    store: MemoryStore, migrated_dsn: str, clock: Clock
) -> None:
    first = await store.remember(
        "Ada lives in London", namespace="ada", key="home", metadata={"source": "chat"}
    )
    between = await clock()
    second = await store.remember(
        "Ada lives in Paris", namespace="ada", key="home", metadata={"source": "letter"}
    )
    assert second.id == first.id
    assert not second.created

    current = await store.get(first.id)
    assert (current.content, current.version) == ("Ada lives in Paris", 2)
    versions = await store.history(first.id)
    assert [(v.version, v.content, v.metadata) for v in versions] == [
        (1, "Ada lives in London", {"source": "chat"}),
        (2, "Ada lives in Paris", {"source": "letter"}),
    ]
    old, new = versions
    assert old.current_from < between < old.current_until == new.current_from  # type: ignore[operator]
    assert old.superseded_by == 2
    assert not old.current
    assert new.current
    assert new.current_until is None
    assert new.superseded_by is None
    assert await store.history(key="home", namespace="ada") == versions

    # Recall and list show the current version only; the old text is not in the recall table.
    hits = await store.recall("London", namespace="ada", mode="keyword")
    assert [hit.content for hit in hits] == []
    hits = await store.recall("where does Ada live", namespace="ada")
    assert [(hit.content, hit.version) for hit in hits] == [("Ada lives in Paris", 2)]
    page = await store.list("ada")
    assert [m.content for m in page.memories] == ["Ada lives in Paris"]
    connection = await asyncpg.connect(migrated_dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM memories") == 1
        assert await connection.fetchval("SELECT count(*) FROM memory_versions") == 1
    finally:
        await connection.close()


async def test_remembering_the_same_again_makes_no_version(store: MemoryStore) -> None:
    first = await store.remember("Ada likes tea", namespace="ada", key="drink")
    await store.remember("Ada likes tea", namespace="ada", key="drink")
    await store.remember("Ada likes tea", namespace="ada", key="drink", expires_at=None)
    assert [v.version for v in await store.history(first.id)] == [1]


@pytest.mark.engines
async def test_update_of_text_or_metadata_makes_a_version_and_expiry_does_not(
    store: MemoryStore,
) -> None:
    first = await store.remember("Ada writes programs", namespace="ada")
    await store.update(first.id, expires_at=datetime.now(UTC) + timedelta(days=1))
    assert [v.version for v in await store.history(first.id)] == [1]
    await store.update(first.id, content="Ada writes notes")
    await store.update(first.id, metadata={"topic": "work"})
    versions = await store.history(first.id)
    assert [(v.version, v.content, v.metadata) for v in versions] == [
        (1, "Ada writes programs", {}),
        (2, "Ada writes notes", {}),
        (3, "Ada writes notes", {"topic": "work"}),
    ]


@pytest.mark.engines
async def test_as_of_answers_from_the_versions_current_then(
    store: MemoryStore, clock: Clock
) -> None:
    before = await clock()
    memory = await store.remember("The meeting is on Monday", namespace="team", key="meeting")
    await store.remember("Lunch is at noon", namespace="team")
    first_time = await clock()
    await store.remember("The meeting is on Friday", namespace="team", key="meeting")
    second_time = await clock()

    for mode in ("vector", "keyword", "hybrid"):
        then = await store.recall("meeting day", namespace="team", as_of=first_time, mode=mode)
        now = await store.recall("meeting day", namespace="team", as_of=second_time, mode=mode)
        assert then[0].content == "The meeting is on Monday", mode
        assert (then[0].id, then[0].version) == (memory.id, 1)
        assert now[0].content == "The meeting is on Friday", mode
        assert all(hit.content != "The meeting is on Friday" for hit in then)
        assert all(hit.content != "The meeting is on Monday" for hit in now)
    with pytest.raises(NotFoundError):
        await store.recall("meeting", namespace="nobody", as_of=first_time)
    assert len(await store.recall("meeting day", namespace="team", as_of=before)) == 0

    listed = await store.list("team", as_of=first_time)
    assert sorted(m.content for m in listed.memories) == [
        "Lunch is at noon",
        "The meeting is on Monday",
    ]
    assert (await store.list("team", as_of=before)).memories == []
    with pytest.raises(InvalidInputError, match="as_of"):
        await store.list(status="failed", as_of=first_time)
    with pytest.raises(InvalidInputError, match="timezone"):
        await store.recall("x", namespace="team", as_of=datetime(2026, 1, 1))


@pytest.mark.engines
async def test_forget_deletes_every_version_and_the_audit_keeps_only_that(
    store: MemoryStore, migrated_dsn: str, clock: Clock
) -> None:
    memory = await store.remember("secret plan A", namespace="vault", key="plan")
    await store.remember("secret plan B", namespace="vault", key="plan")
    other = await store.remember("secret plan C", namespace="vault", key="other")
    await store.remember("secret plan D", namespace="vault", key="other")
    assert await store.forget([memory.id]) == 1
    assert await store.forget(namespace="vault", filter={}) == 1

    connection = await asyncpg.connect(migrated_dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM memories") == 0
        assert await connection.fetchval("SELECT count(*) FROM memory_versions") == 0
        rows = await connection.fetch(
            "SELECT memory_id, action FROM memory_audit WHERE action = 'forget' ORDER BY at"
        )
        audit_text = await connection.fetchval(
            "SELECT string_agg(t::text, ' ') FROM memory_audit t"
        )
    finally:
        await connection.close()
    assert [(row["memory_id"], row["action"]) for row in rows] == [
        (memory.id, "forget"),
        (other.id, "forget"),
    ]
    assert "secret" not in audit_text
    with pytest.raises(NotFoundError):
        await store.history(memory.id)


@pytest.mark.engines
async def test_concurrent_changes_of_one_key_lose_no_version(store: MemoryStore) -> None:
    first = await store.remember("counter is 0", namespace="race", key="counter")
    await asyncio.gather(
        *(store.remember(f"counter is {i}", namespace="race", key="counter") for i in range(1, 9))
    )
    versions = await store.history(first.id)
    assert [v.version for v in versions] == list(range(1, 10))
    assert sorted(v.content for v in versions) == sorted(f"counter is {i}" for i in range(9))
    for earlier, later in itertools.pairwise(versions):
        assert earlier.current_until == later.current_from


async def test_an_expired_memory_written_again_starts_without_a_past(
    store: MemoryStore, migrated_dsn: str, clock: Clock
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    first = await store.remember("ticket 1 open", namespace="desk", key="t1", expires_at=soon)
    await store.remember("ticket 1 pending", namespace="desk", key="t1", expires_at=soon)
    assert len(await store.history(first.id)) == 2
    await asyncio.sleep(1.2)
    with pytest.raises(NotFoundError):
        await store.history(first.id)
    again = await store.remember("ticket 1 reopened", namespace="desk", key="t1")
    versions = await store.history(again.id)
    assert [(v.version, v.content) for v in versions] == [(1, "ticket 1 reopened")]


async def test_history_needs_an_id_or_a_key_in_a_namespace(store: MemoryStore) -> None:
    with pytest.raises(InvalidInputError):
        await store.history()
    with pytest.raises(InvalidInputError, match="namespace"):
        await store.history(key="k")
    with pytest.raises(NotFoundError, match="key"):
        await store.history(key="k", namespace="ns")
