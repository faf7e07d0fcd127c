"""The switch between embedding spaces: forward (``reembed --switch``), back (``--rollback``),
and freeing the old vectors (``--drop-old``).

A switch is one transaction. It locks ``memories`` against writers (``SHARE ROW EXCLUSIVE``:
recall reads on), checks that every embedded memory has a fresh vector in the target space,
keeps the active vectors in ``space_vectors`` (for a rollback), moves the target's vectors into
``memories.embedding`` (the column every hot path reads, so recall and ingest cost what they
did), rebuilds the HNSW index, empty, for the target's size, and flips the states. Readers wait
only for that last index swap; writers for the whole transaction (rows moved per second are in
benchmarks/RESULTS.md). The graph is filled again after the commit (``Indexer.catch_up``),
the heap compacted meanwhile (``heap.compact_heap``: the move left it up to twice its rows),
and then (unless ``reembed --no-compact``) the other indexes of ``memories``, which the move
left half-empty, are rebuilt (``compaction.compact``). A check keeps ``memories`` to the active
size; it is replaced in the same transaction.

Processes still configured for the old space learn of the switch within their guard's recheck
interval (guard.py) and are refused from then on. What they wrote in between carries the old
space: ``settle`` queues those memories again, for the new space's workers to embed.

A rollback is the same move back to the previous space; memories written or changed since the
switch have no fresh vector there and are queued again instead of refusing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.background.compaction import Compaction
from pgrecall.db.errors import database_errors
from pgrecall.db.schema import HNSW_INDEX, SIZE_CHECK, hnsw_index_sql, size_check
from pgrecall.embedding.guard import SPACE_LOCK_KEY, space_of
from pgrecall.embedding.lifecycle import TEXT_HASH, SpaceState, missing_vector
from pgrecall.errors import ConflictError

_Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

_STATES = """
    SELECT id, kind, model, dimensions, document_prefix, query_prefix, embedder_version,
           text_template, state
    FROM embedding_spaces WHERE state <> 'retired' FOR UPDATE
"""
_MISSING = f"SELECT count(*) FROM memories m WHERE {missing_vector('$1', '$2')}"
# The active vectors, kept for the way back.
_KEEP_ACTIVE = f"""
    INSERT INTO space_vectors (namespace, memory_id, space_id, text_hash, embedding)
    SELECT m.namespace, m.id, m.space_id, {TEXT_HASH}, m.embedding FROM memories m
    WHERE m.space_id = $1 AND m.status = 'embedded'
    ON CONFLICT (namespace, memory_id, space_id)
    DO UPDATE SET text_hash = EXCLUDED.text_hash, embedding = EXCLUDED.embedding
"""
# The target's fresh vectors into memories (out of the graph until the indexer flags them).
_MOVE_IN = f"""
    UPDATE memories m SET embedding = s.embedding, space_id = s.space_id, hnsw_indexed = false
    FROM space_vectors s
    WHERE s.namespace = m.namespace AND s.memory_id = m.id AND s.space_id = $2
      AND m.space_id = $1 AND m.status = 'embedded' AND s.text_hash = {TEXT_HASH}
"""
# What is left in the old space (no fresh vector in the target, or written by a process on the
# old settings after the switch): pending again, for the workers of the new space.
_REQUEUE = """
    UPDATE memories m SET embedding = NULL, space_id = NULL, status = 'pending',
                          embed_attempts = 0, embed_error = NULL, embed_after = m.created_at,
                          hnsw_indexed = false
    WHERE m.space_id = $1
"""
_DROP_VECTORS = "DELETE FROM space_vectors WHERE space_id = $1"
_SET_STATE = "UPDATE embedding_spaces SET state = $2 WHERE id = $1"


@dataclass(frozen=True, slots=True)
class Switched:
    """What a switch did: from which space to which, how many vectors moved, how many memories
    were queued again (a rollback's memories changed since the switch), the compaction of
    the indexes the move left half-empty (``SpaceMover.switch`` runs it after the commit unless
    told not to; None then), and the heap's pages before the move and after the steps that
    follow it (the heap compacted while the graph is rebuilt: ``heap.compact_heap``)."""

    old: SpaceState
    new: SpaceState
    moved: int
    requeued: int
    compaction: Compaction | None = None
    heap_pages: tuple[int, int] | None = None


async def _citus(connection: _Connection) -> None:
    """On Citus, one connection per node for the rest of the transaction (as the migrations,
    db/distribute.py): the index DDL follows modifications of memories, and the states'
    update (a reference table) follows a delete from space_vectors on every shard, which Citus
    refuses after a parallel one ("cannot execute DML on table embedding_spaces because there
    was a parallel DML access to distributed table space_vectors")."""
    if await connection.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
        await connection.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")


async def _states(connection: _Connection) -> dict[str, SpaceState]:
    await connection.execute("SELECT pg_advisory_xact_lock($1)", SPACE_LOCK_KEY)
    rows = await connection.fetch(_STATES)
    return {row["state"]: SpaceState(row["id"], space_of(row), row["state"]) for row in rows}


async def switch(pool: asyncpg.Pool, *, rollback: bool = False) -> Switched:
    """Make the building space active (or, with ``rollback``, the previous one); refused while
    a memory lacks its vector in the building space, or when there is no such space."""
    wanted = "previous" if rollback else "building"
    with database_errors():
        async with pool.acquire() as connection, connection.transaction():
            await _citus(connection)
            found = await _states(connection)
            active, target = found.get("active"), found.get(wanted)
            if active is None or target is None:
                raise ConflictError(
                    "no previous space to roll back to (it was dropped, or no switch was made)"
                    if rollback
                    else "no space is being built: run pgrecall reembed with the new settings"
                )
            if rollback and "building" in found:
                raise ConflictError(
                    f"{found['building'].space.describe()} is being built: switch to it, or "
                    "finish it, before rolling back"
                )
            await connection.execute("LOCK TABLE memories IN SHARE ROW EXCLUSIVE MODE")
            await connection.execute(f"ALTER TABLE memories DROP CONSTRAINT {SIZE_CHECK}")
            if not rollback:
                missing = await connection.fetchval(_MISSING, active.id, target.id)
                if missing:
                    raise ConflictError(
                        f"{missing} memories have no vector in {target.space.describe()} yet: "
                        "run pgrecall reembed to finish, then switch"
                    )
            await connection.execute(_KEEP_ACTIVE, active.id)
            moved = int((await connection.execute(_MOVE_IN, active.id, target.id)).split()[-1])
            requeued = int((await connection.execute(_REQUEUE, active.id)).split()[-1])
            await connection.execute(_DROP_VECTORS, target.id)
            older = found.get("previous")
            if not rollback and older is not None:  # one previous space is kept, not two
                await connection.execute(_DROP_VECTORS, older.id)
                await connection.execute(_SET_STATE, older.id, "retired")
            await connection.execute(_SET_STATE, active.id, "building" if rollback else "previous")
            await connection.execute(_SET_STATE, target.id, "active")
            # The size check for the new size: processes still on the old settings cannot write
            # vectors of the old size any more. Readers wait from the drop of the size check to
            # the commit: a scan for the check and the swap of an empty graph (no row flagged).
            dimensions = target.space.dimensions
            await connection.execute(
                f"ALTER TABLE memories ADD CONSTRAINT {SIZE_CHECK} CHECK ({size_check(dimensions)})"
            )
            await connection.execute(f"DROP INDEX {HNSW_INDEX}")
            await connection.execute(hnsw_index_sql(dimensions))
    new_state = "active"
    old_state = "building" if rollback else "previous"
    return Switched(
        SpaceState(active.id, active.space, old_state),
        SpaceState(target.id, target.space, new_state),
        moved,
        requeued,
    )


async def settle(pool: asyncpg.Pool, old: SpaceState) -> int:
    """Queue again what processes on the old settings wrote after the switch (run once they
    have all seen it, after the guard's recheck interval); returns how many."""
    with database_errors():
        status = await pool.execute(_REQUEUE, old.id)
    return int(status.split()[-1])


async def drop_old(pool: asyncpg.Pool) -> SpaceState:
    """Free the previous space's vectors; no rollback to it afterwards."""
    with database_errors():
        async with pool.acquire() as connection, connection.transaction():
            await _citus(connection)
            previous = (await _states(connection)).get("previous")
            if previous is None:
                raise ConflictError("no previous space to drop: nothing is kept for a rollback")
            await connection.execute(_DROP_VECTORS, previous.id)
            await connection.execute(_SET_STATE, previous.id, "retired")
    return SpaceState(previous.id, previous.space, "retired")
