"""Ingestion: validate, hash, skip what is already stored, embed in chunks, write in bulk.

Identity of a memory inside its namespace: its external key when it has one, else its text
(SHA-256 of the content). Remembering the same text twice gives the same id and one row (its
metadata is merged, newest keys winning; its expiry is the newest call's). A keyed memory is
upserted: new text, metadata and expiry replace the old.

Chunks are pipelined: while chunk N is written, chunk N+1 is embedded, and up to
``ingest_concurrent_writes`` chunks are written at once, on their own connections (a chunk that
shares a memory with a write in flight waits for it). One lookup per chunk finds which memories
already have a row: new ones go in by binary COPY, the others by one
``INSERT .. SELECT FROM unnest(..) ON CONFLICT`` per identity kind; never a round trip per row.
A call's new rows are stamped from the server's clock at its first lookup, one microsecond
apart in input order, so concurrent chunks keep "newest first" in the order given; a memory given
its ``created_at`` (an import) keeps it. A memory given a vector of the store's space is not
embedded (see ``prepare.prepare_one``).
When another writer stores one of the new memories between the lookup and the COPY, the unique
index refuses the COPY and the chunk's new memories are upserted instead. Texts whose row
already holds a vector of the store's space for the same content are not embedded again, so a
re-run import costs no embedding; rows the upsert would not change (same text, vector,
metadata after the merge and expiry) are not written either, so remembering a known fact again
leaves its row, and its ``updated_at``, as they are.

Durable: the text is written atomically with its vector, or without one. When the embedder
fails transiently (down, busy, garbled, slower than ``inline_embed_timeout``) the memories are
stored as ``pending`` and the worker embeds them later; once that happens, the rest of the call
(and calls for a while after) store pending at once instead of waiting out retries: the policy
is ``embedding.policy``, shared with ``update`` and the worker. A permanent failure (model
missing, input too long with truncation off) is stored as ``failed`` with its reason and
reported per memory; it never blocks the others. Writes are replayed after a lost connection or
a write conflict: they are idempotent. Every statement takes its rows in one order (namespace,
key, text hash), so concurrent calls writing the same memories in other orders do not deadlock
each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.audit import AUDIT_COPY_COLUMNS
from pgrecall.db.errors import database_errors
from pgrecall.db.plan_cache import generic_plans
from pgrecall.db.retry import with_replays
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.embedding.policy import EmbedOrDefer, announce_pending
from pgrecall.ingest.plan import Chunk, WritePlan, chunk_bounds, dedupe, plan
from pgrecall.ingest.prepare import Identity, Prepared
from pgrecall.ingest.sql import COPY_COLUMNS, FIND_EXISTING, FIND_UNCHANGED, UPSERTS
from pgrecall.records import Remembered


@dataclass
class IngestionService:
    """Writes memories: the ``remember`` path of the store."""

    pool: asyncpg.Pool
    embedding: EmbedOrDefer
    spaces: SpaceRegistry
    chunk_size: int  # memories embedded and written per step
    concurrent_writes: int  # chunks of one call written at once

    async def remember(self, prepared: Sequence[Prepared], actor: str) -> list[Remembered]:
        """Store ``prepared`` memories, audited as ``actor``'s; results in input order."""
        space_id = await self.spaces.ensure(self.embedding.embedder.space)
        results: list[Remembered | None] = [None] * len(prepared)
        chunks = (
            dedupe(prepared[start:end], start)
            for start, end in chunk_bounds(len(prepared), self.chunk_size)
        )
        chunk = next(chunks, None)
        looking: asyncio.Task[tuple[list[int], datetime]] | None = None
        if chunk is not None:
            looking = asyncio.create_task(self._lookup(chunk, space_id, []))
        writing: list[tuple[Chunk, asyncio.Task[bool]]] = []  # in flight, oldest first
        call_clock: datetime | None = None  # the server's, at the call's first lookup
        any_pending = False
        try:
            while chunk is not None and looking is not None:
                remaining, clock = await looking
                # The next chunk is looked up while this one is embedded and planned; the writes
                # not done yet, this one's included, are those its lookup cannot trust.
                following = next(chunks, None)
                looking = None
                if following is not None:
                    unsettled = [earlier for earlier, _ in writing] + [chunk]
                    looking = asyncio.create_task(self._lookup(following, space_id, unsettled))
                await self._embed(chunk, remaining)
                call_clock = call_clock or clock
                planned = plan(chunk, space_id, call_clock)
                # Wait for the oldest writes until there is room, and for every write of a
                # memory this chunk also writes: the later item wins, and two writes never wait
                # on each other's rows.
                waits = len(writing) - self.concurrent_writes + 1
                for position, (earlier, _) in enumerate(writing):
                    if earlier.shares_memories_with(chunk):
                        waits = max(waits, position + 1)
                for _ in range(waits):
                    any_pending |= await writing.pop(0)[1]
                task = asyncio.create_task(self._write(chunk, planned, results, actor))
                writing.append((chunk, task))
                chunk = following
            while writing:
                any_pending |= await writing.pop(0)[1]
        finally:
            # After a failure: nothing of this call goes on behind the caller's back.
            unfinished: list[asyncio.Task[Any]] = [task for _, task in writing]
            if looking is not None:
                unfinished.append(looking)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        if any_pending:
            await announce_pending(self.pool)
        return [result for result in results if result is not None]

    async def _lookup(
        self, chunk: Chunk, space_id: int, unsettled: list[Chunk]
    ) -> tuple[list[int], datetime]:
        """Note which of the chunk's memories have a row and which the write would not change;
        return the indexes of those that hold no vector of this space for this text, and the
        server's clock.

        A memory that an ``unsettled`` chunk (being written, or planned before this one) writes
        is never taken as unchanged: its row as looked up may not hold that write yet, and the
        later item must win."""

        async def find(
            sql: str, namespace: str, memories: list[Prepared], *extra: object
        ) -> list[asyncpg.Record]:
            # Generic plans, forced: the probes read the same unique index whatever the
            # values (``sql._probe``), and planning the statement afresh costs 0.5-0.9 ms, which
            # a moved store's statistics made PostgreSQL pay at every call in one state of each
            # switch benchmark run (one memory a call 1.16-1.20x its copy, its backends' CPU
            # 1.40-1.50x; benchmarks/RESULTS.md, issue 21, session 17).
            with database_errors(), generic_plans():
                return await self.pool.fetch(
                    sql,
                    [m.namespace for m in memories],
                    [m.content_hash for m in memories],
                    [m.key for m in memories],
                    space_id,
                    [m.search_text for m in memories],
                    *extra,
                    namespace,
                )

        # Both lookups are asked of one namespace at a time (see FIND_EXISTING: one shard on
        # Citus, and probes the planner cannot turn into a read of the namespace per row).
        reusable = []
        clock: datetime | None = None
        for namespace, indexes in _by_namespace(chunk.unique, range(len(chunk.unique))):
            members = [chunk.unique[index] for index in indexes]
            found = (await with_replays(partial(find, FIND_EXISTING, namespace, members)))[0]
            clock = clock or found["clock"]  # the first lookup's, as the call's new rows take
            for position, kept in zip(found["positions"], found["reusable"], strict=True):
                chunk.stored.add(indexes[position - 1])
                if kept:
                    reusable.append(indexes[position - 1])
        assert clock is not None  # a chunk holds at least one memory
        candidates = [
            index
            for index in reusable
            if not any(other.writes(chunk.unique[index].identity) for other in unsettled)
        ]
        for namespace, indexes in _by_namespace(chunk.unique, candidates):
            known = [chunk.unique[index] for index in indexes]
            metadata = [m.metadata for m in known]
            expiry = [m.expires_at for m in known]
            valid = ([m.valid_from for m in known], [m.valid_until for m in known])
            lookup = partial(find, FIND_UNCHANGED, namespace, known, metadata, expiry, *valid)
            for row in await with_replays(lookup):
                chunk.unchanged[indexes[row["position"] - 1]] = row["id"]
        kept = set(reusable)
        return [index for index in range(len(chunk.unique)) if index not in kept], clock

    async def _embed(self, chunk: Chunk, remaining: list[int]) -> None:
        """Embed the chunk's memories at the ``remaining`` indexes (those given a vector in the
        store's space take it instead); what is not embedded is stored pending or failed."""
        for index in remaining:
            chunk.vectors[index] = chunk.unique[index].vector
        remaining = [index for index in remaining if chunk.vectors[index] is None]
        outcome = await self.embedding.embed([chunk.unique[i].embed_text for i in remaining])
        for index, vector, failure in zip(
            remaining, outcome.vectors, outcome.failures, strict=True
        ):
            chunk.vectors[index] = vector
            if failure is not None:
                chunk.errors[index] = str(failure)

    async def _write(
        self, chunk: Chunk, planned: WritePlan, results: list[Remembered | None], actor: str
    ) -> bool:
        """Write the chunk and its audit entries; True when some rows were left pending."""

        async def write() -> dict[int, Remembered]:
            written = {  # by index into chunk.unique
                index: Remembered(identifier, chunk.unique[index].namespace, False)
                for index, identifier in chunk.unchanged.items()
            }
            to_upsert = planned.upserts
            if not planned.copied and not to_upsert:
                return written
            # In the lookups' mode (generic plans): a remember then keeps its connection in one
            # mode, where switching back between the lookup and the write cost a SET each way
            # (two round trips a call). The upsert's plan is its conflict probes whatever the
            # values; a COPY is not planned.
            with database_errors(), generic_plans():
                async with self.pool.acquire() as connection:
                    if planned.copied:
                        try:
                            async with connection.transaction():
                                await _copy(connection, planned, actor)
                        except (asyncpg.UniqueViolationError, asyncpg.InternalServerError):
                            # Stored by another writer since the lookup: the copy is rolled
                            # back whole, and these memories upserted instead. Citus reports a
                            # shard's refusal of a COPY without its SQLSTATE (XX000): the upsert
                            # that follows is right whatever the cause, and raises a cause other
                            # than a duplicate again, with its own code.
                            to_upsert = to_upsert + planned.copied_as_upserts(chunk)
                        else:
                            written.update(_copied(chunk, planned))
                    for kind, indexes, arrays in to_upsert:
                        index_of = {chunk.unique[index].identity: index for index in indexes}
                        for row in await connection.fetch(UPSERTS[kind], *arrays, actor):
                            written[index_of[_identity(kind, row)]] = _remembered(row)
            return written

        written = await with_replays(write)
        for position, index in chunk.positions:
            results[position] = written[index]
        return any(result.status == "pending" for result in written.values())


async def _copy(
    connection: PoolConnectionProxy[asyncpg.Record], planned: WritePlan, actor: str
) -> None:
    """The new memories by binary COPY and their audit entries by a second one, in the
    caller's transaction."""
    await connection.copy_records_to_table(
        "memories", records=planned.records, columns=COPY_COLUMNS
    )
    columns = planned.copied_columns
    created = [
        (namespace, identifier, "create", actor, 1)
        for namespace, identifier in zip(columns["namespace"], columns["id"], strict=True)
    ]
    await connection.copy_records_to_table(
        "memory_audit", records=created, columns=AUDIT_COPY_COLUMNS
    )


def _copied(chunk: Chunk, planned: WritePlan) -> dict[int, Remembered]:
    """What became of the memories the plan copied in: new rows."""
    columns = planned.copied_columns
    return {
        index: Remembered(identifier, chunk.unique[index].namespace, True, status, error)
        for index, identifier, status, error in zip(
            planned.copied, columns["id"], columns["status"], columns["embed_error"], strict=True
        )
    }


def _identity(kind: str, row: asyncpg.Record) -> Identity:
    """The identity (see Prepared.identity) of a row an upsert of ``kind`` returned."""
    return (row["namespace"], kind, row["key" if kind == "key" else "content_hash"])


def _remembered(row: asyncpg.Record) -> Remembered:
    return Remembered(
        id=row["id"],
        namespace=row["namespace"],
        created=row["inserted"],
        status=row["status"],
        error=row["embed_error"],
    )


def _by_namespace(memories: list[Prepared], indexes: Iterable[int]) -> list[tuple[str, list[int]]]:
    """The ``indexes`` into ``memories`` grouped by the memory's namespace, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for index in indexes:
        groups.setdefault(memories[index].namespace, []).append(index)
    return list(groups.items())
