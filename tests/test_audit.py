"""The audit log (issue 20, point 4): every create, supersede, update, invalidate and forget,
with the actor and time, per namespace, kept for a retention."""

from __future__ import annotations

import getpass

import asyncpg
import pytest

from pgrecall import InvalidInputError, MemoryStore
from pgrecall.audit import AuditLog, key_actor


@pytest.mark.engines
async def test_every_change_is_audited_with_its_actor(store: MemoryStore) -> None:
    memory = await store.remember("plan A", namespace="team", key="plan")
    await store.remember("plan A", namespace="team", key="plan")  # unchanged: no entry
    await store.remember("plan B", namespace="team", key="plan", actor="agent-7")
    await store.update(memory.id, metadata={"owner": "ada"}, actor="ada")
    await store.invalidate(memory.id, reason="dropped", actor="ada")
    await store.forget([memory.id], actor="bob")
    await store.remember(["note one", "note two"], namespace="team")

    entries = await store.audit("team")
    me = f"user:{getpass.getuser()}"
    notes = entries[:2]
    assert {entry.action for entry in notes} == {"create"}
    assert {entry.actor for entry in notes} == {me}
    plan = [(e.action, e.actor, e.version) for e in reversed(entries[2:])]
    assert plan == [
        ("create", me, 1),
        ("supersede", "agent-7", 2),
        ("update", "ada", 3),
        ("invalidate", "ada", 3),
        ("forget", "bob", 3),
    ]
    assert all(entry.memory_id == memory.id for entry in entries[2:])
    assert [e.action for e in await store.audit("team", memory=memory.id, limit=2)] == [
        "forget",
        "invalidate",
    ]
    older = await store.audit("team", memory=memory.id, before=entries[4].at)
    assert [e.action for e in older] == ["supersede", "create"]
    assert await store.audit("elsewhere") == []


async def test_bad_audit_arguments_are_refused(store: MemoryStore) -> None:
    with pytest.raises(InvalidInputError, match="actor"):
        await store.remember("x", namespace="team", actor="")
    with pytest.raises(InvalidInputError, match="limit"):
        await store.audit("team", limit=0)
    with pytest.raises(InvalidInputError):
        await store.audit("")


@pytest.mark.engines
async def test_entries_past_the_retention_are_deleted(
    migrated_dsn: str, store: MemoryStore
) -> None:
    memory = await store.remember("kept", namespace="team")
    connection = await asyncpg.connect(migrated_dsn)
    try:
        await connection.execute(
            "INSERT INTO memory_audit (namespace, at, memory_id, action, actor) "
            "VALUES ('team', now() - interval '40 days', $1, 'update', 'old')",
            memory.id,
        )
        pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=1)
        try:
            assert await AuditLog(pool, retention_days=0).prune() == 0
            assert await AuditLog(pool, retention_days=30).prune() == 1
        finally:
            await pool.close()
        actors = await connection.fetch("SELECT actor FROM memory_audit")
    finally:
        await connection.close()
    assert [row["actor"] for row in actors] == [f"user:{getpass.getuser()}"]


def test_a_key_is_named_by_a_fingerprint_never_itself() -> None:
    key = "a-very-secret-api-key-0123"
    actor = key_actor(key)
    assert actor.startswith("key:")
    assert len(actor) == 16
    assert key not in actor
    assert actor == key_actor(key)
    assert actor != key_actor(key + "x")
