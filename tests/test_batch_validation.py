"""A batch with one invalid item is refused whole, naming the item and field; nothing stored.

Issue 17: an expiry of 9999-12-31T23:59:59-14:00 passed validation and overflowed in the COPY
(asyncpg sends timestamps as UTC through Python's datetime), after 562 of 600 were committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from pgrecall import InvalidInputError, MemoryInput, MemoryStore

from .conftest import store_settings
from .fakes import HashEmbedder
from .http_server import ServerThread

OUT_OF_RANGE = [
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
    datetime(1, 1, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=1))),
]
LATER = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
async def hashed(migrated_dsn: str) -> AsyncIterator[MemoryStore]:
    store = await MemoryStore.open(store_settings(), dsn=migrated_dsn, embedder=HashEmbedder())
    yield store
    await store.close()


async def _count(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM memories"))
    finally:
        await connection.close()


@pytest.mark.parametrize("expiry", OUT_OF_RANGE, ids=["late", "early"])
async def test_a_batch_with_an_expiry_out_of_range_stores_nothing(
    hashed: MemoryStore, migrated_dsn: str, expiry: datetime
) -> None:
    batch = [MemoryInput(f"memory {i}", expires_at=LATER) for i in range(600)]
    batch[562] = MemoryInput("memory 562", expires_at=expiry)
    with pytest.raises(InvalidInputError, match=r"expires_at .* out of range.*\(item 562\)") as e:
        await hashed.remember(batch, namespace="n")
    assert e.value.position == 562
    assert await _count(migrated_dsn) == 0


@pytest.mark.parametrize("expiry", OUT_OF_RANGE, ids=["late", "early"])
async def test_every_timestamp_is_checked_before_use(
    hashed: MemoryStore, migrated_dsn: str, expiry: datetime
) -> None:
    stored = await hashed.remember("kept as it is", namespace="n", expires_at=LATER)
    with pytest.raises(InvalidInputError, match=r"expires_at .* out of range"):
        await hashed.update(stored.id, expires_at=expiry)
    assert (await hashed.get(stored.id)).expires_at == LATER
    for field in ("created_after", "created_before"):
        with pytest.raises(InvalidInputError, match=f"{field} .* out of range"):
            await hashed.recall("kept", namespace="n", **{field: expiry})  # type: ignore[arg-type]
    # The very ends, which asyncpg would send as -infinity and infinity and read back without
    # a time zone, are refused too; a microsecond inside them is kept as given.
    for edge in (datetime.min, datetime.max):
        with pytest.raises(InvalidInputError, match="out of range"):
            await hashed.update(stored.id, expires_at=edge.replace(tzinfo=UTC))
    # The far future first: the distant past expires the memory, and gone is gone.
    for inside in (datetime.max - timedelta(1), datetime.min + timedelta(microseconds=1)):
        kept = await hashed.update(stored.id, expires_at=inside.replace(tzinfo=UTC))
        assert kept.expires_at == inside.replace(tzinfo=UTC)


@pytest.fixture
def client(migrated_dsn: str) -> Iterator[httpx.Client]:
    settings = store_settings(database_url=migrated_dsn, http_max_batch=1000)
    running = ServerThread(settings).start()
    try:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            yield http
    finally:
        running.stop()


@pytest.mark.parametrize(
    "expiry", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00"], ids=["late", "early"]
)
def test_http_refuses_the_whole_batch_with_422(
    client: httpx.Client, migrated_dsn: str, expiry: str
) -> None:
    memories = [{"namespace": "n", "content": f"memory {i}"} for i in range(600)]
    memories[562]["expires_at"] = expiry
    response = client.post("/v1/memories", json={"memories": memories})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "expires_at" in error["message"]
    assert "item 562" in error["message"]
    listed = client.get("/v1/memories", params={"namespace": "n"})
    assert listed.json()["memories"] == []
