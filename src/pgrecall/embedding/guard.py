"""The embedding-space guard: the first write records the space; others are refused."""

from __future__ import annotations

import asyncio
from dataclasses import fields, replace

import asyncpg

from pgrecall.db.errors import database_errors
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import EmbeddingSpaceMismatchError

# pg_advisory_xact_lock key held while recording the first space: ASCII "pgsp".
SPACE_LOCK_KEY = 0x70677370

# An EmbeddingSpace's fields are the columns of its row (and its id).
_FIELDS = tuple(field.name for field in fields(EmbeddingSpace))
_COLUMNS = ", ".join(("id", *_FIELDS))
_SELECT = f"SELECT {_COLUMNS} FROM embedding_spaces ORDER BY id LIMIT 1"
_INSERT = f"""
    INSERT INTO embedding_spaces ({", ".join(_FIELDS)})
    VALUES ({", ".join(f"${position}" for position in range(1, len(_FIELDS) + 1))})
    RETURNING {_COLUMNS}
"""


def _space(row: asyncpg.Record) -> EmbeddingSpace:
    return EmbeddingSpace(**{name: row[name] for name in _FIELDS})


def mismatch(recorded: EmbeddingSpace, asked: EmbeddingSpace) -> EmbeddingSpaceMismatchError:
    """The error for vectors from ``asked`` meeting a store built in ``recorded``."""
    return EmbeddingSpaceMismatchError(
        f"this store holds vectors of {recorded.describe()}, but the embedder is "
        f"{asked.describe()}: configure the store's model, size and prefixes again, or re-embed "
        "the memories into a new store"
    )


class SpaceRegistry:
    """The store's recorded space, read once and cached.

    The space compared is the embedder's plus the store's indexed-text templates
    (``text_template``): the same model fed other text makes other vectors.
    """

    def __init__(self, pool: asyncpg.Pool, text_template: str = "") -> None:
        self._pool = pool
        self._text_template = text_template
        self._recorded: tuple[int, EmbeddingSpace] | None = None
        self._lock = asyncio.Lock()

    async def recorded(self) -> tuple[int, EmbeddingSpace] | None:
        """The id and space the store was built with, or None before the first write."""
        if self._recorded is None:
            with database_errors():
                row = await self._pool.fetchrow(_SELECT)
            if row is not None:
                self._recorded = (row["id"], _space(row))
        return self._recorded

    async def every(self) -> dict[int, EmbeddingSpace]:
        """Every space recorded, by id (an export names the space of each vector it writes)."""
        with database_errors():
            rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM embedding_spaces")
        return {row["id"]: _space(row) for row in rows}

    def stored_as(self, space: EmbeddingSpace) -> EmbeddingSpace:
        """The space this store's vectors are in when ``space``'s embedder makes them."""
        return replace(space, text_template=self._text_template)

    async def require(self, space: EmbeddingSpace) -> int | None:
        """The recorded space's id if ``space`` is it; None when nothing is recorded yet."""
        space = self.stored_as(space)
        recorded = await self.recorded()
        if recorded is None:
            return None
        if recorded[1] != space:
            raise mismatch(recorded[1], space)
        return recorded[0]

    async def ensure(self, space: EmbeddingSpace) -> int:
        """Record ``space`` if the store has none yet (one writer wins); return its id."""
        space = self.stored_as(space)
        known = await self.require(space)
        if known is not None:
            return known
        with database_errors():
            row = await self._record(space)
        self._recorded = (row["id"], _space(row))
        if self._recorded[1] != space:
            raise mismatch(self._recorded[1], space)
        return int(row["id"])

    async def _record(self, space: EmbeddingSpace) -> asyncpg.Record:
        async with self._lock, self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SPACE_LOCK_KEY)
            row = await connection.fetchrow(_SELECT)
            if row is None:
                row = await connection.fetchrow(
                    _INSERT, *(getattr(space, name) for name in _FIELDS)
                )
            assert row is not None
            return row
