"""Changing one memory in place: ``MemoryStore.update``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from pgrecall import validation
from pgrecall.config import Settings
from pgrecall.db.errors import database_errors
from pgrecall.embedding.base import Embedder
from pgrecall.errors import ConflictError, DatabaseError
from pgrecall.filters import SqlParams
from pgrecall.ingest import content_hash
from pgrecall.records import Memory
from pgrecall.spaces import SpaceRegistry


class _Unset:
    """Marks an argument that was not given (None means clear it)."""


UNSET = _Unset()


@dataclass(frozen=True, slots=True)
class Change:
    """What ``update`` changes; fields left unset stay as they are."""

    content: str | None = None
    metadata: Mapping[str, Any] | None = None
    expires_at: datetime | _Unset | None = UNSET


class UpdateService:
    """Changes one memory in place; a new text is embedded again before it is written."""

    def __init__(
        self, pool: asyncpg.Pool, embedder: Embedder, spaces: SpaceRegistry, settings: Settings
    ) -> None:
        self._pool = pool
        self._embedder = embedder
        self._spaces = spaces
        self._max_chars = settings.max_content_chars

    async def update(self, current: Memory, change: Change) -> UUID:
        """Apply ``change`` to ``current``; raises ConflictError if the new text already is
        another memory of the namespace."""
        params = SqlParams()
        assignments = ["updated_at = now()"]
        if change.content is not None and change.content != current.content:
            text = validation.content(change.content, self._max_chars)
            space_id = await self._spaces.ensure(self._embedder.space)
            vector = (await self._embedder.embed_documents([text])).vectors[0]
            assignments += [
                f"content = {params.add(text, 'text')}",
                f"content_hash = {params.add(content_hash(text), 'bytea')}",
                f"embedding = {params.add(vector, 'vector')}",
                f"space_id = {params.add(space_id, 'int')}",
            ]
        if change.metadata is not None:
            assignments.append(
                f"metadata = {params.add(validation.metadata(change.metadata), 'jsonb')}"
            )
        if not isinstance(change.expires_at, _Unset):
            expires_at = validation.timestamp(change.expires_at, "expires_at")
            assignments.append(f"expires_at = {params.add(expires_at, 'timestamptz')}")
        where = (
            f"namespace = {params.add(current.namespace, 'text')} "
            f"AND id = {params.add(current.id, 'uuid')}"
        )
        try:
            with database_errors():
                await self._pool.execute(
                    f"UPDATE memories SET {', '.join(assignments)} WHERE {where}", *params.values
                )
        except DatabaseError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ConflictError(
                    f"namespace {current.namespace!r} already holds a memory with this text; "
                    "forget one of them or give them keys"
                ) from exc
            raise
        return current.id
