"""Changing one memory in place: ``MemoryStore.update``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from pgrecall import validation
from pgrecall.audit import logged
from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors
from pgrecall.db.params import SqlParams
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.embedding.policy import EmbedOrDefer, announce_pending
from pgrecall.errors import ConflictError
from pgrecall.ingest.context import ContextWindow, Threaded, indexed_texts
from pgrecall.ingest.prepare import content_hash
from pgrecall.ingest.templates import TextTemplates
from pgrecall.records import UNSET, Memory, Unset

# Only an unkeyed memory is identified by its text (memories_namespace_content_hash_key).
_DELETE_EXPIRED_TWIN = f"""
    DELETE FROM memories
    WHERE namespace = $1 AND content_hash = $2 AND key IS NULL AND id <> $3
      AND NOT {unexpired()}
"""


class _TextTaken(Exception):
    """The changed text is already another memory's of the namespace (its unique index)."""


def _conflict(namespace: str) -> ConflictError:
    return ConflictError(
        f"namespace {namespace!r} already holds a memory with this text; "
        "forget one of them or give them keys"
    )


@dataclass(frozen=True, slots=True)
class Change:
    """What ``update`` changes; fields left unset stay as they are."""

    content: str | None = None
    metadata: Mapping[str, Any] | None = None
    expires_at: datetime | Unset | None = UNSET


@dataclass
class UpdateService:
    """Changes one memory in place; a new text is embedded again before it is written."""

    pool: asyncpg.Pool
    embedding: EmbedOrDefer
    spaces: SpaceRegistry
    templates: TextTemplates
    max_chars: int  # of a memory's text
    context: ContextWindow | None = None  # contextual indexing, when on

    async def update(self, current: Memory, change: Change, actor: str) -> UUID:
        """Apply ``change`` to ``current``; raises ConflictError if the new text already is
        another memory of the namespace. A new indexed text is embedded again under the policy
        of ``remember`` (``embedding.policy``): while the embedder is unavailable the memory goes
        pending and the workers are woken to embed it once it answers. A new text or metadata
        makes a new version (the trigger of migration 0011 keeps the old one); the change is
        audited as ``actor``'s in the same statement."""
        params = SqlParams()
        assignments = ["updated_at = now()"]
        text = current.content
        metadata: Mapping[str, Any] = current.metadata
        if change.content is not None and change.content != current.content:
            text = validation.content(change.content, self.max_chars)
            assignments += [
                f"content = {params.add(text, 'text')}",
                f"content_hash = {params.add(content_hash(text), 'bytea')}",
            ]
        if change.metadata is not None:
            metadata = change.metadata
            assignments.append(
                f"metadata = {params.add(validation.metadata(change.metadata), 'jsonb')}"
            )
        if not isinstance(change.expires_at, Unset):
            expires_at = validation.check_timestamp(change.expires_at, "expires_at")
            assignments.append(f"expires_at = {params.add(expires_at, 'timestamptz')}")
        before, after = await self._indexed(current, text, metadata)
        pending = False
        if text != current.content or after != before:
            assignments.append(f"search_text = {params.add(after, 'text')}")
            embedding, pending = await self._embedding_assignments(after or text, params)
            assignments += embedding
        where = (
            f"namespace = {params.add(current.namespace, 'text')} "
            f"AND id = {params.add(current.id, 'uuid')}"
        )
        audit = logged("changed", "'update'", params.add(actor, "text"))
        sql = (
            f"WITH changed AS (UPDATE memories SET {', '.join(assignments)} "
            f"WHERE {where} RETURNING namespace, id, version), audit AS ({audit}) "
            "SELECT count(*) FROM changed"
        )
        try:
            await self._write(sql, params.values)
        except _TextTaken as taken:
            # The text may be an expired memory's, gone to every read but not yet swept: the
            # change takes its place, as remember would (a live twin is a conflict).
            if not await self._sweep_expired_twin(current, text):
                raise _conflict(current.namespace) from taken
            try:
                await self._write(sql, params.values)
            except _TextTaken as again:  # a live twin written since
                raise _conflict(current.namespace) from again
        if pending:
            await announce_pending(self.pool)
        return current.id

    async def _write(self, sql: str, values: list[object]) -> None:
        with database_errors():
            try:
                await self.pool.execute(sql, *values)
            except asyncpg.UniqueViolationError as exc:
                # The client's conflict (a 409), caught before database_errors would log it as
                # a refusal at error level.
                raise _TextTaken from exc

    async def _sweep_expired_twin(self, current: Memory, text: str) -> bool:
        """Delete the expired memory of ``current``'s namespace with this text, as the sweeper
        will once its grace period is over (and, like the sweeper's, not audited: it was gone
        already); whether there was one."""
        with database_errors():
            status = await self.pool.execute(
                _DELETE_EXPIRED_TWIN, current.namespace, content_hash(text), current.id
            )
        return status != "DELETE 0"

    async def _indexed(
        self, current: Memory, text: str, metadata: Mapping[str, Any]
    ) -> tuple[str | None, str | None]:
        """The memory's indexed text before and after the change (with its context, which
        the change does not move: the memories before it stay the same)."""
        if self.context is None:
            render = self.templates.render
            return (
                render(current.namespace, current.content, current.metadata),
                render(current.namespace, text, metadata),
            )
        place = (current.created_at, current.id)
        texts = []
        # One call each: the two versions are not turns of one thread.
        for content, data in ((current.content, current.metadata), (text, metadata)):
            version = Threaded(
                current.namespace, content, dict(data), content_hash(content), None, place
            )
            texts += await indexed_texts(self.pool, self.templates, self.context, [version])
        return texts[0], texts[1]

    async def _embedding_assignments(self, text: str, params: SqlParams) -> tuple[list[str], bool]:
        """The columns that give the memory its new vector, and whether it is left pending."""
        space_id = await self.spaces.ensure(self.embedding.embedder.space)
        outcome = await self.embedding.embed([text])
        failure, vector = outcome.failures[0], outcome.vectors[0]
        if failure is not None:
            raise failure  # one memory, asked for now: its caller hears why
        if vector is None:
            reason = None if outcome.deferred_by is None else str(outcome.deferred_by)
            return [
                "embedding = NULL",
                "space_id = NULL",
                "status = 'pending'",
                "embed_after = now()",
                "embed_attempts = 0",
                f"embed_error = {params.add(reason, 'text')}",
            ], True
        return [
            f"embedding = {params.add(vector, 'vector')}",
            f"space_id = {params.add(space_id, 'int')}",
            "status = 'embedded'",
            "embed_error = NULL",
        ], False
