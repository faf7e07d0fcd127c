"""Several clients writing the same memories at once, in different orders: none fails.

Issue 17: 8 clients x 200 shared memories deadlocked (SQLSTATE 40P01) in 27 of 43 requests.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pgrecall import MemoryInput, MemoryStore

from .conftest import store_settings
from .fakes import HashEmbedder

CLIENTS = 8
ROUNDS = 4
MEMORIES = 200  # half keyed (metadata replaced), half not (metadata merged)


@pytest.fixture
async def shared(migrated_dsn: str) -> AsyncIterator[MemoryStore]:
    store = await MemoryStore.open(
        store_settings(worker=False, pool_max_size=CLIENTS * 3),
        dsn=migrated_dsn,
        embedder=HashEmbedder(),
    )
    yield store
    await store.close()


def _batch(client: int, round_: int, order: random.Random) -> list[MemoryInput]:
    items = []
    for i in range(MEMORIES):
        if i % 2:
            metadata = {"client": client, "round": round_}
            items.append(MemoryInput(f"fact {i}", key=f"k{i}", metadata=metadata))
        else:
            items.append(MemoryInput(f"note {i}", metadata={f"c{client}": round_}))
    order.shuffle(items)
    return items


async def test_clients_writing_the_same_memories_in_other_orders(
    shared: MemoryStore, migrated_dsn: str
) -> None:
    async def client(number: int) -> None:
        order = random.Random(number)
        for round_ in range(ROUNDS):
            await shared.remember(_batch(number, round_, order), namespace="shared")

    outcomes = await asyncio.gather(*(client(n) for n in range(CLIENTS)), return_exceptions=True)
    assert [o for o in outcomes if o is not None] == []

    connection = await asyncpg.connect(migrated_dsn)
    try:
        rows = await connection.fetch(
            "SELECT key, content, metadata FROM memories WHERE namespace = 'shared'"
        )
    finally:
        await connection.close()
    assert len(rows) == MEMORIES
    last = ROUNDS - 1
    for row in rows:
        metadata = json.loads(row["metadata"])
        if row["key"] is not None:
            # Replaced: by some client's last write of it (each client's rounds follow each
            # other, so an earlier round winning would mean a later write was lost).
            assert metadata["round"] == last, row
        else:
            # Merged: every client's last round is in it.
            assert metadata == {f"c{n}": last for n in range(CLIENTS)}, row


async def _deadlocks(connection: asyncpg.Connection) -> int:
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    count = await connection.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(count)


async def _wait_for_deadlocks(connection: asyncpg.Connection, count: int) -> int:
    """The deadlock counter once it reaches ``count`` (backends report it within a second or
    so), or after 10 s."""
    for _ in range(100):
        seen = await _deadlocks(connection)
        if seen >= count:
            return seen
        await asyncio.sleep(0.1)
    return seen


async def test_a_write_that_deadlocks_is_replayed(shared: MemoryStore, migrated_dsn: str) -> None:
    """Another transaction holds b and then asks for a while the call's upsert holds a and
    waits for b: PostgreSQL breaks the cycle by rolling back the upsert (the first waiter
    checks first), and the call writes it again once b is free."""
    await shared.remember(
        [MemoryInput("fact a", key="a"), MemoryInput("fact b", key="b")], namespace="n"
    )
    other = await asyncpg.connect(migrated_dsn)
    watcher = await asyncpg.connect(migrated_dsn)
    try:
        before = await _deadlocks(watcher)
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT 1 FROM memories WHERE namespace = 'n' AND key = 'b' FOR UPDATE")
        changed = [
            MemoryInput("fact a", key="a", metadata={"by": "call"}),
            MemoryInput("fact b", key="b", metadata={"by": "call"}),
        ]
        call = asyncio.create_task(shared.remember(changed, namespace="n"))
        for _ in range(500):  # until the upsert waits for b (bounded: 5 s)
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO memories%'"
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the call's upsert never waited for the locked row")
        await other.execute(
            'UPDATE memories SET metadata = \'{"by": "other"}\' '
            "WHERE namespace = 'n' AND key = 'a'"
        )
        await transaction.commit()
        await asyncio.wait_for(call, 30)
        assert await _wait_for_deadlocks(watcher, before + 1) == before + 1
        rows = await watcher.fetch("SELECT key, metadata FROM memories WHERE namespace = 'n'")
        assert {row["key"]: json.loads(row["metadata"]) for row in rows} == {
            "a": {"by": "call"},
            "b": {"by": "call"},
        }
    finally:
        await other.close()
        await watcher.close()
