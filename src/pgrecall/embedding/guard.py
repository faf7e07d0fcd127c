"""The embedding-space guard: the first write records the space; others are refused.

The store's space is its *active* one (``embedding_spaces.state``, migration 0012): ``pgrecall
reembed --switch`` can make another space active while processes run. Each process reads the
active space once and again at most every ``recheck_seconds`` (a clock comparison per call,
one query per interval: nothing measurable on the write path), so a process configured for the
old space learns of a switch within that time and is refused with
``EmbeddingSpaceSwitchedError``, which tells it to restart with the new settings.

A caller that holds a pooled connection (the worker's claim holds its rows' locks on one) passes
it as ``connection``: the space is then read and recorded on it, never on a second connection
from the pool, which a pool of one would wait for forever (it did: the worker's claim hung on the
recheck's read once the interval had passed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.errors import database_errors
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import EmbeddingSpaceMismatchError, EmbeddingSpaceSwitchedError

# pg_advisory_xact_lock key held while recording the first space: ASCII "pgsp".
SPACE_LOCK_KEY = 0x70677370
# Default of how old the cached active space may get before it is read again.
RECHECK_SECONDS = 2.0

# An EmbeddingSpace's fields are the columns of its row (and its id).
FIELDS = tuple(field.name for field in fields(EmbeddingSpace))
COLUMNS = ", ".join(("id", *FIELDS))
# The identity of a space as a WHERE clause over $1..$n, in FIELDS order.
IDENTITY = " AND ".join(f"{name} = ${position}" for position, name in enumerate(FIELDS, 1))
_SELECT = f"SELECT {COLUMNS} FROM embedding_spaces WHERE state = 'active'"
_INSERT = f"""
    INSERT INTO embedding_spaces ({", ".join(FIELDS)}, state)
    VALUES ({", ".join(f"${position}" for position in range(1, len(FIELDS) + 1))}, 'active')
    RETURNING {COLUMNS}
"""
_STATE = f"SELECT state FROM embedding_spaces WHERE {IDENTITY}"

# A connection the caller already holds from the pool.
Held: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


def space_of(row: asyncpg.Record) -> EmbeddingSpace:
    """The space a row of ``embedding_spaces`` (selected with ``COLUMNS``) describes."""
    return EmbeddingSpace(**{name: row[name] for name in FIELDS})


def identity(space: EmbeddingSpace) -> tuple[object, ...]:
    """The values ``IDENTITY`` binds for ``space``."""
    return tuple(getattr(space, name) for name in FIELDS)


def mismatch(
    recorded: EmbeddingSpace, asked: EmbeddingSpace, state: str | None = None
) -> EmbeddingSpaceMismatchError:
    """The error for vectors from ``asked`` meeting a store whose active space is ``recorded``;
    ``state`` is ``asked``'s own in this store, if it has one."""
    if state in ("previous", "retired"):
        return EmbeddingSpaceSwitchedError(
            f"this store switched to {recorded.describe()} (pgrecall reembed --switch), but this "
            f"process embeds with {asked.describe()}: restart it with the new settings (model, "
            "dimensions, prefixes)"
        )
    hint = (
        "it is being built: run pgrecall reembed --switch when it is complete"
        if state == "building"
        else "configure the store's model, size and prefixes again, or move the memories to "
        "this one with pgrecall reembed"
    )
    return EmbeddingSpaceMismatchError(
        f"this store holds vectors of {recorded.describe()}, but the embedder is "
        f"{asked.describe()}: {hint}"
    )


class SpaceRegistry:
    """The store's recorded space, read once and cached.

    The space compared is the embedder's plus the store's indexed-text templates
    (``text_template``): the same model fed other text makes other vectors.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        text_template: str = "",
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self._pool = pool
        self._text_template = text_template
        self._recheck_seconds = recheck_seconds
        self._recorded: tuple[int, EmbeddingSpace] | None = None
        self._read_at = 0.0  # time.monotonic() of the last read of the active space
        # This process's space was the active one: a mismatch now means a switch (or rollback).
        self._was_active = False
        self._lock = asyncio.Lock()

    async def recorded(self, connection: Held | None = None) -> tuple[int, EmbeddingSpace] | None:
        """The id and space the store's vectors are in (its active space), or None before the
        first write; read again once ``recheck_seconds`` have passed (on ``connection`` if
        given, see the module)."""
        now = time.monotonic()
        if self._recorded is None or now - self._read_at >= self._recheck_seconds:
            with database_errors():
                row = await self._on(connection).fetchrow(_SELECT)
            self._recorded = (row["id"], space_of(row)) if row is not None else None
            self._read_at = now
        return self._recorded

    async def every(self) -> dict[int, EmbeddingSpace]:
        """Every space recorded, by id (an export names the space of each vector it writes)."""
        with database_errors():
            rows = await self._pool.fetch(f"SELECT {COLUMNS} FROM embedding_spaces")
        return {row["id"]: space_of(row) for row in rows}

    async def _mismatch(
        self, recorded: EmbeddingSpace, asked: EmbeddingSpace, connection: Held | None
    ) -> EmbeddingSpaceMismatchError:
        with database_errors():
            state = await self._on(connection).fetchval(_STATE, *identity(asked))
        return mismatch(recorded, asked, "previous" if self._was_active else state)

    def stored_as(self, space: EmbeddingSpace) -> EmbeddingSpace:
        """The space this store's vectors are in when ``space``'s embedder makes them."""
        return replace(space, text_template=self._text_template)

    async def require(self, space: EmbeddingSpace, connection: Held | None = None) -> int | None:
        """The recorded space's id if ``space`` is it; None when nothing is recorded yet."""
        space = self.stored_as(space)
        recorded = await self.recorded(connection)
        if recorded is None:
            return None
        if recorded[1] != space:
            raise await self._mismatch(recorded[1], space, connection)
        self._was_active = True
        return recorded[0]

    async def ensure(self, space: EmbeddingSpace, connection: Held | None = None) -> int:
        """Record ``space`` if the store has none yet (one writer wins); return its id."""
        space = self.stored_as(space)
        known = await self.require(space, connection)
        if known is not None:
            return known
        with database_errors():
            row = await self._record(space, connection)
        self._recorded = (row["id"], space_of(row))
        self._read_at = time.monotonic()
        if self._recorded[1] != space:
            raise await self._mismatch(self._recorded[1], space, connection)
        self._was_active = True
        return int(row["id"])

    async def _record(self, space: EmbeddingSpace, held: Held | None) -> asyncpg.Record:
        """The active space, ``space`` inserted as it if there is none, under the space lock.

        On a held connection the insert is a savepoint of the caller's transaction, and the
        lock stays until that commits: only the store's first write waits for it."""
        async with self._connection(held) as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SPACE_LOCK_KEY)
            row = await connection.fetchrow(_SELECT)
            if row is None:
                row = await connection.fetchrow(_INSERT, *identity(space))
            assert row is not None
            return row

    def _on(self, held: Held | None) -> Held | asyncpg.Pool:
        """Where a read goes: ``held`` if given (see the module), else the pool."""
        return self._pool if held is None else held

    @asynccontextmanager
    async def _connection(self, held: Held | None) -> AsyncIterator[Held]:
        """``held``, or one from the pool (one recording at a time in this process). A held
        connection skips the process's lock: its holder may be waiting for the pool."""
        if held is not None:
            yield held
            return
        async with self._lock, self._pool.acquire() as connection:
            yield connection
