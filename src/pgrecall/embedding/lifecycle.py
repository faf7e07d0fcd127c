"""The life of embedding spaces in one store: active, building, previous, retired.

One space is active: ``memories.embedding`` holds its vectors and every process must be
configured for it (guard.py). ``pgrecall reembed`` registers the space its settings describe as
*building* and fills ``space_vectors`` for it (background/reembed.py); the switch makes it
active and keeps the old one as *previous* for a rollback (background/switch.py); dropping the
old one retires it and frees its vectors. This module reads and records those states; it holds
no vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.errors import database_errors
from pgrecall.embedding.guard import COLUMNS, FIELDS, IDENTITY, SPACE_LOCK_KEY, identity, space_of
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import ConflictError, EmbeddingSpaceMismatchError
from pgrecall.records import SpaceBuild

# A memory's text as embedded (the worker's choice, worker.py), and its hash as space_vectors
# keeps it: a vector whose hash differs is stale (the memory changed after it was made).
EMBEDDED_TEXT = "coalesce(m.search_text, m.content)"
TEXT_HASH = f"sha256(convert_to({EMBEDDED_TEXT}, 'UTF8'))"


def missing_vector(
    active: str, building: str, namespace: str | None = None, after: str | None = None
) -> str:
    """Condition over ``memories m``: embedded in the active space (``$active``) and without a
    fresh vector in the building one. ``namespace`` (a placeholder) is repeated in the
    subquery so that Citus routes both to one shard; ``after`` (a placeholder: only memories
    with a greater id are asked about) too, so that a merge anti join reads the building
    space's vectors from there, not all those done before it."""
    inner = f" AND s.namespace = {namespace}" if namespace else ""
    if after:
        inner += f" AND s.memory_id > {after}"
    return f"""m.status = 'embedded' AND m.space_id = {active} AND NOT EXISTS (
        SELECT 1 FROM space_vectors s
        WHERE s.namespace = m.namespace AND s.memory_id = m.id AND s.space_id = {building}
          AND s.text_hash = {TEXT_HASH}{inner})"""


# Where the states are read from: the pool, or one connection (doctor's).
Reader: TypeAlias = "asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]"


@dataclass(frozen=True, slots=True)
class SpaceState:
    """A recorded space, its id and state."""

    id: int
    space: EmbeddingSpace
    state: str


@dataclass(frozen=True, slots=True)
class Overview:
    """The spaces of a store that matter now: what doctor and stats show."""

    active: SpaceState | None
    building: SpaceBuild | None
    previous: SpaceState | None


_STATES = f"SELECT {COLUMNS}, state FROM embedding_spaces WHERE state <> 'retired'"
_COUNTS = f"""
    SELECT (SELECT count(*) FROM memories m WHERE m.status = 'embedded') AS total,
           (SELECT count(*) FROM memories m WHERE {missing_vector("$1", "$2")}) AS missing
"""
_FIND = f"SELECT id, state FROM embedding_spaces WHERE {IDENTITY} FOR UPDATE"
_SET_STATE = "UPDATE embedding_spaces SET state = $2 WHERE id = $1"
_INSERT_BUILDING = f"""
    INSERT INTO embedding_spaces ({", ".join(FIELDS)}, state)
    VALUES ({", ".join(f"${n}" for n in range(1, len(FIELDS) + 1))}, 'building')
    RETURNING id
"""


async def states(pool: Reader) -> dict[str, SpaceState]:
    """The active, building and previous spaces, by state (those there are)."""
    with database_errors():
        rows = await pool.fetch(_STATES)
    return {row["state"]: SpaceState(row["id"], space_of(row), row["state"]) for row in rows}


async def overview(pool: Reader) -> Overview:
    """The active space, the one being built with its progress, and the one kept for rollback."""
    found = await states(pool)
    active, building = found.get("active"), found.get("building")
    progress = None
    if building is not None:
        done, total = 0, 0
        if active is not None:
            with database_errors():
                row = await pool.fetchrow(_COUNTS, active.id, building.id)
            assert row is not None
            total = row["total"]
            done = total - row["missing"]
        progress = SpaceBuild(building.space, done, total)
    return Overview(active, progress, found.get("previous"))


async def begin_build(pool: asyncpg.Pool, space: EmbeddingSpace) -> tuple[SpaceState, int]:
    """The active space and the id of ``space`` registered as building (again, if a build of
    it was interrupted or it was retired or rolled back from). Refused when it is the active
    space, or while another space is being built."""
    async with pool.acquire() as connection, connection.transaction():
        with database_errors():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SPACE_LOCK_KEY)
            found = {
                row["state"]: SpaceState(row["id"], space_of(row), row["state"])
                for row in await connection.fetch(_STATES)
            }
            active = found.get("active")
            if active is None:
                raise EmbeddingSpaceMismatchError(
                    "this store holds no vectors yet: nothing to re-embed (the first memory "
                    "records the configured space)"
                )
            if active.space == space:
                raise ConflictError(
                    f"{space.describe()} is already the store's active space: configure the "
                    "new model, dimensions or prefixes to re-embed into"
                )
            building = found.get("building")
            if building is not None and building.space != space:
                raise ConflictError(
                    f"{building.space.describe()} is being built: finish it (pgrecall reembed "
                    "--switch) or run reembed with its settings"
                )
            row = await connection.fetchrow(_FIND, *identity(space))
            if row is None:
                built = await connection.fetchval(_INSERT_BUILDING, *identity(space))
            else:
                built = row["id"]
                if row["state"] != "building":
                    await connection.execute(_SET_STATE, built, "building")
            return active, int(built)
