"""Expired means gone: no read returns a memory past ``expires_at``, and the sweeper deletes it
after the grace period, in batches that never wait on a writer.

Issue 17: an expired memory was still returned by GET, list and stats, and never deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from pgrecall import ConflictError, MemoryInput, MemoryStore, NotFoundError
from pgrecall.background.expiry import SWEEP_BATCH_SIZE

from .conftest import store_settings
from .fakes import HashEmbedder
from .http_server import ServerThread

PAST = datetime(2020, 1, 1, tzinfo=UTC)


async def _open(dsn: str, **settings: Any) -> MemoryStore:
    return await MemoryStore.open(
        store_settings(**{"worker": False, **settings}), dsn=dsn, embedder=HashEmbedder()
    )


@pytest.fixture
async def hashed(migrated_dsn: str) -> AsyncIterator[MemoryStore]:
    store = await _open(migrated_dsn, expired_grace_seconds=1.0)
    yield store
    await store.close()


async def _rows(dsn: str) -> dict[str, datetime | None]:
    """Every row in the table, expired or not: content -> expires_at."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT content, expires_at FROM memories")
    finally:
        await connection.close()
    return {row["content"]: row["expires_at"] for row in rows}


async def _until(condition: Any, seconds: float = 15.0) -> None:
    """Wait (bounded) until ``await condition()`` holds."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s")
        await asyncio.sleep(0.05)


async def test_a_memory_is_gone_from_every_read_at_its_expiry(hashed: MemoryStore) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    short = await hashed.remember("The door code is 1234.", namespace="a", expires_at=soon)
    await hashed.remember("The door code is 9876.", namespace="a")
    assert (await hashed.get(short.id)).content == "The door code is 1234."
    assert (await hashed.stats(namespace="a")).memories == 2

    async def expired() -> bool:
        try:
            await hashed.get(short.id)
        except NotFoundError:
            return True
        return False

    await _until(expired)
    assert datetime.now(UTC) >= soon
    page = await hashed.list("a")
    assert [m.content for m in page.memories] == ["The door code is 9876."]
    stats = await hashed.stats()
    assert (stats.memories, stats.embedded) == (1, 1)
    assert [(n.namespace, n.memories) for n in stats.namespaces] == [("a", 1)]
    hits = await hashed.recall("door code", namespace="a", k=5)
    assert [hit.content for hit in hits] == ["The door code is 9876."]
    with pytest.raises(NotFoundError):
        await hashed.update(short.id, metadata={"revived": True})


async def test_a_namespace_of_expired_memories_is_empty(hashed: MemoryStore) -> None:
    gone = await hashed.remember("Embedded and expired.", namespace="b", expires_at=PAST)
    assert gone.status == "embedded"
    with pytest.raises(NotFoundError, match="no memories in namespace 'b'"):
        await hashed.recall("expired", namespace="b")
    assert (await hashed.stats()).memories == 0
    assert (await hashed.list(status="embedded")).memories == []


async def test_forget_and_retry_count_only_what_had_not_expired(
    hashed: MemoryStore, migrated_dsn: str
) -> None:
    # get answers "no memory" for an expired one: forget must not say it forgot it.
    gone = await hashed.remember("Expired already.", namespace="c", expires_at=PAST)
    live = await hashed.remember("Still here.", namespace="c")
    assert await hashed.forget([gone.id], namespace="c") == 0
    assert await hashed.forget([live.id], namespace="c") == 1
    for text in ("Expired and failed.", "Failed, not expired."):
        await hashed.remember(text, namespace="d", expires_at=PAST if "Expired" in text else None)
    await hashed.remember("Expired, matched.", namespace="d", expires_at=PAST)
    connection = await asyncpg.connect(migrated_dsn)
    try:
        await connection.execute(
            "UPDATE memories SET status = 'failed', embedding = NULL, space_id = NULL"
            " WHERE namespace = 'd'"
        )
    finally:
        await connection.close()
    assert await hashed.retry_failed(namespace="d") == 1  # the expired ones stay gone
    assert await hashed.forget(namespace="d", filter={}) == 1


async def test_an_update_that_expires_a_memory_returns_it_once(hashed: MemoryStore) -> None:
    memory = await hashed.remember("Short-lived.", namespace="a")
    updated = await hashed.update(memory.id, expires_at=PAST)
    assert updated.expires_at == PAST
    with pytest.raises(NotFoundError):
        await hashed.get(memory.id)


@pytest.mark.parametrize("key", [None, "code"])
async def test_remembered_again_an_expired_memory_starts_afresh(
    hashed: MemoryStore, key: str | None
) -> None:
    """Until the sweeper deletes its row, an expired memory written again takes the row over
    as a new memory would: none of its metadata carried over, created now."""
    old = await hashed.remember(
        "The door code is 1234.", namespace="a", key=key, metadata={"old": 1}, expires_at=PAST
    )
    started = datetime.now(UTC)
    new = await hashed.remember(
        "The door code is 1234.", namespace="a", key=key, metadata={"new": 2}
    )
    assert new.created
    assert new.id == old.id
    stored = await hashed.get(new.id)
    assert stored.metadata == {"new": 2}
    assert stored.expires_at is None
    assert stored.created_at == stored.updated_at > started - timedelta(seconds=5)
    again = await hashed.remember("The door code is 1234.", namespace="a", key=key)
    assert not again.created


async def test_an_update_to_the_text_of_an_expired_memory_takes_its_place(
    hashed: MemoryStore, migrated_dsn: str
) -> None:
    """An expired twin is gone to every read, so it cannot be the conflict a live twin is: the
    change deletes it (as the sweeper would) and is written. A live twin still conflicts."""
    await hashed.remember("The door code is 1234.", namespace="a", expires_at=PAST)
    await hashed.remember("Lunch at noon.", namespace="a")
    memory = await hashed.remember("The door code is 9999.", namespace="a")
    changed = await hashed.update(memory.id, content="The door code is 1234.")
    assert (changed.id, changed.content, changed.expires_at) == (memory.id, changed.content, None)
    assert await _rows(migrated_dsn) == {"The door code is 1234.": None, "Lunch at noon.": None}
    with pytest.raises(ConflictError, match="already holds"):
        await hashed.update(memory.id, content="Lunch at noon.")
    assert (await hashed.get(memory.id)).content == "The door code is 1234."
    # A keyed memory is identified by its key: its text is no twin, and it stays as it was.
    keyed = await hashed.remember("Keyed, expired.", namespace="a", key="k", expires_at=PAST)
    assert (await hashed.update(memory.id, content="Keyed, expired.")).id == memory.id
    connection = await asyncpg.connect(migrated_dsn)
    try:
        kept = await connection.fetch("SELECT id FROM memories WHERE content = 'Keyed, expired.'")
    finally:
        await connection.close()
    assert sorted(row["id"] for row in kept) == sorted([keyed.id, memory.id])


async def test_the_sweeper_deletes_after_the_grace_period(
    hashed: MemoryStore, migrated_dsn: str
) -> None:
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    await hashed.remember(
        [
            MemoryInput("expires soon", expires_at=soon),
            MemoryInput("expires tomorrow", expires_at=datetime.now(UTC) + timedelta(days=1)),
            MemoryInput("never expires"),
        ],
        namespace="a",
    )
    assert await hashed.sweeper.sweep() == 0  # not expired yet
    await _until(lambda: _gone(hashed, "a", "expires soon"))
    assert await hashed.sweeper.sweep() == 0  # expired, but within the one-second grace
    assert "expires soon" in await _rows(migrated_dsn)

    async def swept() -> bool:
        return await hashed.sweeper.sweep() == 1

    await _until(swept)
    assert datetime.now(UTC) >= soon + timedelta(seconds=1)
    assert set(await _rows(migrated_dsn)) == {"expires tomorrow", "never expires"}


async def _gone(store: MemoryStore, namespace: str, content: str) -> bool:
    page = await store.list(namespace)
    return content not in [m.content for m in page.memories]


async def test_the_sweeper_works_in_batches_per_namespace(migrated_dsn: str) -> None:
    store = await _open(migrated_dsn, expired_grace_seconds=0)
    try:
        count = SWEEP_BATCH_SIZE + 7
        for namespace in ("a", "b"):
            await store.remember(
                [f"{namespace} {i}" for i in range(count)], namespace=namespace, expires_at=PAST
            )
        await store.remember("kept", namespace="a")
        assert await store.sweeper.sweep() == 2 * count
        assert set(await _rows(migrated_dsn)) == {"kept"}
    finally:
        await store.close()


async def test_the_sweeper_never_waits_on_a_writer(migrated_dsn: str) -> None:
    store = await _open(migrated_dsn, expired_grace_seconds=0)
    writer = await asyncpg.connect(migrated_dsn)
    try:
        await store.remember(["locked", "free"], namespace="a", expires_at=PAST)
        async with writer.transaction():
            await writer.execute("SELECT 1 FROM memories WHERE content = 'locked' FOR UPDATE")
            # Bounded: it would wait for the writer's transaction without SKIP LOCKED.
            assert await asyncio.wait_for(store.sweeper.sweep(), 10) == 1
        assert set(await _rows(migrated_dsn)) == {"locked"}
        assert await store.sweeper.sweep() == 1
    finally:
        await writer.close()
        await store.close()


async def test_the_background_worker_sweeps(migrated_dsn: str) -> None:
    store = await _open(
        migrated_dsn, worker=True, expired_grace_seconds=0, expired_sweep_seconds=0.2
    )
    try:
        await store.remember("swept by the worker", namespace="a", expires_at=PAST)

        async def swept() -> bool:
            return not await _rows(migrated_dsn)

        await _until(swept)
    finally:
        await store.close()


@pytest.fixture
def client(migrated_dsn: str) -> Iterator[httpx.Client]:
    running = ServerThread(store_settings(database_url=migrated_dsn, worker=False)).start()
    try:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            yield http
    finally:
        running.stop()


def test_http_reads_leave_expired_memories_out(client: httpx.Client) -> None:
    past = PAST.isoformat()
    stored = client.post(
        "/v1/memories",
        json={
            "memories": [
                {"namespace": "a", "content": "gone", "expires_at": past},
                {"namespace": "a", "content": "kept"},
            ]
        },
    ).json()["memories"]
    gone, kept = (item["id"] for item in stored)
    assert client.get(f"/v1/memories/{gone}").status_code == 404
    assert client.patch(f"/v1/memories/{gone}", json={"metadata": {}}).status_code == 404
    assert client.get(f"/v1/memories/{kept}").status_code == 200
    listed = client.get("/v1/memories", params={"namespace": "a"}).json()
    assert [m["content"] for m in listed["memories"]] == ["kept"]
    stats = client.get("/v1/stats").json()
    assert (stats["memories"], stats["namespaces"][0]["memories"]) == (1, 1)
    hits = client.post("/v1/recall", json={"query": "gone kept", "namespaces": ["a"]}).json()
    assert [hit["content"] for hit in hits["hits"]] == ["kept"]
    assert hits["pending"] == 0
