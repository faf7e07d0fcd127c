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
embedded (see ``prepare_one``).
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
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall import validation
from pgrecall.audit import AUDIT_COPY_COLUMNS
from pgrecall.db.errors import database_errors
from pgrecall.db.retry import with_replays
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.embedding.policy import EmbedOrDefer, announce_pending
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.ingest.ids import new_ids
from pgrecall.ingest.sql import (
    AUDITED_UPSERT_BY_CONTENT,
    AUDITED_UPSERT_BY_KEY,
    COPY_COLUMNS,
    FIND_EXISTING,
    FIND_UNCHANGED,
)
from pgrecall.ingest.templates import TextTemplates
from pgrecall.records import EmbedStatus, MemoryInput, Remembered

_Identity = tuple[str, str, str | bytes]  # see Prepared.identity


class Prepared(NamedTuple):
    """A validated memory, ready to embed and write (a tuple: made for every memory, and a
    frozen dataclass took 1 us of the caller's time each)."""

    namespace: str
    content: str
    content_hash: bytes
    metadata: str
    key: str | None
    expires_at: datetime | None
    search_text: str | None = None  # rendered by the template; None: the content itself
    created_at: datetime | None = None  # given (an import); None: stamped at the write
    vector: bytes | None = None  # given in the store's space (pgvector binary); None: embed
    valid_from: datetime | None = None  # valid time, as the agent gave it
    valid_until: datetime | None = None

    @property
    def embed_text(self) -> str:
        """What the embedder sees."""
        return self.search_text or self.content

    @property
    def identity(self) -> _Identity:
        """What makes two inputs the same memory."""
        if self.key is not None:
            return (self.namespace, "key", self.key)
        return (self.namespace, "content", self.content_hash)


def content_hash(text: str) -> bytes:
    """SHA-256 of the UTF-8 text: the identity of an unkeyed memory in its namespace."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def prepare_one(
    item: MemoryInput,
    *,
    default_namespace: str | None,
    max_chars: int,
    templates: TextTemplates,
    space: EmbeddingSpace,
    position: int | None,
) -> Prepared:
    """Validate one item (errors name ``position`` when given), hash it, render its text.

    A given vector is kept only when it was made in ``space``, the store's: a vector of another
    space is dropped and the text embedded afresh, so two spaces never meet in one store.
    """
    text = validation.content(item.content, max_chars, position)
    namespace = validation.namespace(item.namespace or default_namespace, position)
    metadata = validation.metadata(item.metadata, position)
    given = item.embedding
    vector = None
    if given is not None and given.space == space:
        vector = validation.vector(given.vector, space.dimensions, position)
    valid_from, valid_until = validation.valid_span(item.valid_from, item.valid_until, position)
    return Prepared(
        namespace,
        text,
        content_hash(text),
        metadata,
        validation.key(item.key, position),
        validation.check_timestamp(item.expires_at, "expires_at", position),
        templates.render(namespace, text, item.metadata or {}),
        validation.check_timestamp(item.created_at, "created_at", position),
        vector,
        valid_from,
        valid_until,
    )


def prepare(
    items: Sequence[MemoryInput],
    *,
    default_namespace: str | None,
    max_chars: int,
    templates: TextTemplates,
    space: EmbeddingSpace,
) -> list[Prepared]:
    """Validate every item (errors name the item's position), hash it, render its text; all of
    them before the caller writes any, so one invalid item refuses the whole batch."""
    return [
        prepare_one(
            item,
            default_namespace=default_namespace,
            max_chars=max_chars,
            templates=templates,
            space=space,
            position=position,
        )
        for position, item in enumerate(items)
    ]


@dataclass(slots=True)
class _Chunk:
    """Distinct memories of one step, and for each input position which of them it is."""

    unique: list[Prepared]
    positions: list[tuple[int, int]]  # (input position, index into unique)
    index_of: dict[_Identity, int]  # which of unique each identity is
    first_positions: list[int]  # input position where each of unique first appears
    vectors: list[bytes | None]  # pgvector's binary format
    errors: list[str | None]
    stored: set[int] = field(default_factory=set)  # indexes of memories that have a row
    # indexes of stored memories the write would not change, and their rows' ids
    unchanged: dict[int, uuid.UUID] = field(default_factory=dict)

    def writes(self, identity: _Identity) -> bool:
        """Whether this chunk's write changes the memory of ``identity``."""
        index = self.index_of.get(identity)
        return index is not None and index not in self.unchanged

    def shares_memories_with(self, other: _Chunk) -> bool:
        return any(identity in other.index_of for identity in self.index_of)

    def status(self, index: int) -> EmbedStatus:
        """What the row will be: embedded (vector now), failed (error), else pending."""
        if self.vectors[index] is not None:
            return "embedded"
        return "failed" if self.errors[index] is not None else "pending"


def _chunk_bounds(count: int, size: int) -> list[tuple[int, int]]:
    """Where the chunks of ``count`` memories start and end. The first and the last are a
    quarter of ``size``: nothing is being written while the first is looked up, embedded and
    encoded, and nothing prepared while the last is written."""
    edge = max(1, size // 4)
    bounds = []
    start, end = 0, min(count, edge)
    while start < count:
        bounds.append((start, end))
        start, end = end, min(count, end + size)
    last_start, last_end = bounds[-1] if bounds else (0, 0)
    if last_end - last_start > edge:
        bounds[-1:] = [(last_start, last_end - edge), (last_end - edge, last_end)]
    return bounds


def _dedupe(prepared: Sequence[Prepared], offset: int) -> _Chunk:
    index_of: dict[_Identity, int] = {}
    unique: list[Prepared] = []
    first_positions = []
    positions = []
    for position, memory in enumerate(prepared, start=offset):
        index = index_of.get(memory.identity)
        if index is None:
            index = index_of[memory.identity] = len(unique)
            unique.append(memory)
            first_positions.append(position)
        elif memory.key is not None:
            unique[index] = memory  # the last version of a keyed memory wins
        else:
            unique[index] = _merged(unique[index], memory)
        positions.append((position, index))
    empty: list[None] = [None] * len(unique)
    return _Chunk(
        unique=unique,
        positions=positions,
        index_of=index_of,
        first_positions=first_positions,
        vectors=list(empty),
        errors=list(empty),
    )


def _merged(earlier: Prepared, later: Prepared) -> Prepared:
    """An unkeyed memory given twice in one chunk, as two calls would leave it: the metadata
    merged (the later keys win), the later expiry and indexed text."""
    metadata = {**json.loads(earlier.metadata), **json.loads(later.metadata)}
    return later._replace(metadata=json.dumps(metadata, ensure_ascii=False))


class IngestionService:
    """Writes memories: the ``remember`` path of the store."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        embedding: EmbedOrDefer,
        spaces: SpaceRegistry,
        chunk_size: int,
        concurrent_writes: int,
    ) -> None:
        self._pool = pool
        self._embedding = embedding
        self._spaces = spaces
        self._chunk_size = chunk_size
        self._concurrent_writes = concurrent_writes

    async def remember(self, prepared: Sequence[Prepared], actor: str) -> list[Remembered]:
        """Store ``prepared`` memories, audited as ``actor``'s; results in input order."""
        space_id = await self._spaces.ensure(self._embedding.embedder.space)
        results: list[Remembered | None] = [None] * len(prepared)
        chunks = (
            _dedupe(prepared[start:end], start)
            for start, end in _chunk_bounds(len(prepared), self._chunk_size)
        )
        chunk = next(chunks, None)
        looking: asyncio.Task[tuple[list[int], datetime]] | None = None
        if chunk is not None:
            looking = asyncio.create_task(self._lookup(chunk, space_id, []))
        writing: list[tuple[_Chunk, asyncio.Task[bool]]] = []  # in flight, oldest first
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
                plan = _plan(chunk, space_id, call_clock)
                # Wait for the oldest writes until there is room, and for every write of a
                # memory this chunk also writes: the later item wins, and two writes never wait
                # on each other's rows.
                waits = len(writing) - self._concurrent_writes + 1
                for position, (earlier, _) in enumerate(writing):
                    if earlier.shares_memories_with(chunk):
                        waits = max(waits, position + 1)
                for _ in range(waits):
                    any_pending |= await writing.pop(0)[1]
                writing.append(
                    (chunk, asyncio.create_task(self._write(chunk, plan, results, actor)))
                )
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
            await announce_pending(self._pool)
        return [result for result in results if result is not None]

    async def _lookup(
        self, chunk: _Chunk, space_id: int, unsettled: list[_Chunk]
    ) -> tuple[list[int], datetime]:
        """Note which of the chunk's memories have a row and which the write would not change;
        return the indexes of those that hold no vector of this space for this text, and the
        server's clock.

        A memory that an ``unsettled`` chunk (being written, or planned before this one) writes
        is never taken as unchanged: its row as looked up may not hold that write yet, and the
        later item must win."""

        async def find(sql: str, memories: list[Prepared], *extra: object) -> list[asyncpg.Record]:
            with database_errors():
                return await self._pool.fetch(
                    sql,
                    [m.namespace for m in memories],
                    [m.content_hash for m in memories],
                    [m.key for m in memories],
                    space_id,
                    [m.search_text for m in memories],
                    *extra,
                )

        found = (await with_replays(lambda: find(FIND_EXISTING, chunk.unique)))[0]
        reusable = []
        for position, kept in zip(found["positions"], found["reusable"], strict=True):
            chunk.stored.add(position - 1)
            if kept:
                reusable.append(position - 1)
        candidates = [
            index
            for index in reusable
            if not any(other.writes(chunk.unique[index].identity) for other in unsettled)
        ]
        if candidates:
            known = [chunk.unique[index] for index in candidates]
            metadata = [m.metadata for m in known]
            expiry = [m.expires_at for m in known]
            valid = ([m.valid_from for m in known], [m.valid_until for m in known])
            for row in await with_replays(
                lambda: find(FIND_UNCHANGED, known, metadata, expiry, *valid)
            ):
                chunk.unchanged[candidates[row["position"] - 1]] = row["id"]
        kept = set(reusable)
        return [index for index in range(len(chunk.unique)) if index not in kept], found["clock"]

    async def _embed(self, chunk: _Chunk, remaining: list[int]) -> None:
        """Embed the chunk's memories at the ``remaining`` indexes (those given a vector in the
        store's space take it instead); what is not embedded is stored pending or failed."""
        for index in remaining:
            chunk.vectors[index] = chunk.unique[index].vector
        remaining = [index for index in remaining if chunk.vectors[index] is None]
        outcome = await self._embedding.embed([chunk.unique[i].embed_text for i in remaining])
        for index, vector, failure in zip(
            remaining, outcome.vectors, outcome.failures, strict=True
        ):
            chunk.vectors[index] = vector
            if failure is not None:
                chunk.errors[index] = str(failure)

    async def _write(
        self, chunk: _Chunk, plan: _WritePlan, results: list[Remembered | None], actor: str
    ) -> bool:
        """Write the chunk and its audit entries; True when some rows were left pending."""

        async def write() -> dict[int, Remembered]:
            written = {  # by index into chunk.unique
                index: Remembered(identifier, chunk.unique[index].namespace, False)
                for index, identifier in chunk.unchanged.items()
            }
            upserts = plan.upserts
            if not plan.copied and not upserts:
                return written
            with database_errors():
                async with self._pool.acquire() as connection:
                    if plan.copied:
                        try:
                            async with connection.transaction():
                                await _copy(connection, plan, actor)
                        except asyncpg.UniqueViolationError:
                            # Stored by another writer since the lookup: the copy is rolled
                            # back whole, and these memories upserted instead.
                            upserts = upserts + _upserts(
                                chunk, plan.copied, plan.space_id, plan.call_clock
                            )
                        else:
                            for index, identifier in zip(plan.copied, plan.ids, strict=True):
                                written[index] = _copied(chunk, index, identifier)
                    for kind, sql, indexes, columns in upserts:
                        index_of = {chunk.unique[index].identity: index for index in indexes}
                        for row in await connection.fetch(sql, *columns, actor):
                            written[index_of[_identity(kind, row)]] = _remembered(row)
            return written

        written = await with_replays(write)
        for position, index in chunk.positions:
            results[position] = written[index]
        return any(result.status == "pending" for result in written.values())


# identity kind, statement, indexes of the memories written, their column arrays
_Upsert = tuple[str, str, list[int], list[Sequence[object]]]


@dataclass(frozen=True, slots=True)
class _WritePlan:
    """How a chunk is written: its new memories copied in, the changed others upserted."""

    space_id: int
    call_clock: datetime
    copied: list[int]  # indexes of the new memories
    ids: list[uuid.UUID]  # their ids
    records: Sequence[tuple[object, ...]]  # their rows, in COPY_COLUMNS order
    upserts: list[_Upsert]


def _plan(chunk: _Chunk, space_id: int, call_clock: datetime) -> _WritePlan:
    copied = [index for index in range(len(chunk.unique)) if index not in chunk.stored]
    ids = new_ids(len(copied))  # in input order, as the call's stamps
    records = []
    new = sorted(zip(copied, ids, strict=True), key=lambda pair: _write_order(chunk, pair[0]))
    for index, identifier in new:
        memory = chunk.unique[index]
        vector = chunk.vectors[index]
        created = _created(chunk, index, call_clock)
        records.append(
            (
                created,
                created,
                identifier,
                memory.namespace,
                memory.key,
                memory.content,
                memory.content_hash,
                memory.metadata,
                vector,
                space_id if vector is not None else None,
                memory.expires_at,
                chunk.status(index),
                chunk.errors[index],
                memory.search_text,
                memory.valid_from,
                memory.valid_until,
            )
        )
    stored = sorted(chunk.stored.difference(chunk.unchanged))
    upserts = _upserts(chunk, stored, space_id, call_clock)
    return _WritePlan(space_id, call_clock, copied, ids, records, upserts)


def _write_order(chunk: _Chunk, index: int) -> tuple[str, str, bytes]:
    """Where a memory's row comes in every write statement: one order for all writers. Rows
    locked in other orders by two statements deadlock (SQLSTATE 40P01): 8 clients writing
    the same 200 memories shuffled failed in 7 of 8 calls. PostgreSQL takes the rows of a
    COPY and of an INSERT .. SELECT FROM unnest(..) in the order given."""
    memory = chunk.unique[index]
    return (memory.namespace, memory.key or "", memory.content_hash)


def _created(chunk: _Chunk, index: int, call_clock: datetime) -> datetime:
    """created_at (and first updated_at) of a new row: the one given (an import keeps the
    exported time), else the call's clock plus one microsecond per input position."""
    given = chunk.unique[index].created_at
    if given is not None:
        return given
    return call_clock + timedelta(microseconds=chunk.first_positions[index])


def _upserts(
    chunk: _Chunk, indexes: list[int], space_id: int, call_clock: datetime
) -> list[_Upsert]:
    """The upserts that write the chunk's memories at ``indexes``, one per identity kind."""
    ordered = sorted(indexes, key=lambda index: _write_order(chunk, index))
    keyed = [i for i in ordered if chunk.unique[i].key is not None]
    unkeyed = [i for i in ordered if chunk.unique[i].key is None]
    upserts = []
    if unkeyed:
        columns = _columns(chunk, unkeyed, space_id, call_clock, keyed=False)
        upserts.append(("content", AUDITED_UPSERT_BY_CONTENT, unkeyed, columns))
    if keyed:
        columns = _columns(chunk, keyed, space_id, call_clock, keyed=True)
        upserts.append(("key", AUDITED_UPSERT_BY_KEY, keyed, columns))
    return upserts


def _columns(
    chunk: _Chunk, indexes: list[int], space_id: int, call_clock: datetime, *, keyed: bool
) -> list[Sequence[object]]:
    memories = [chunk.unique[i] for i in indexes]
    vectors = [chunk.vectors[i] for i in indexes]
    columns: list[Sequence[object]] = [[m.namespace for m in memories]]
    if keyed:
        columns.append([m.key for m in memories])
    columns += [
        [m.content for m in memories],
        [m.content_hash for m in memories],
        [m.metadata for m in memories],
        vectors,
        [space_id if v is not None else None for v in vectors],
        [m.expires_at for m in memories],
        [chunk.status(i) for i in indexes],
        [chunk.errors[i] for i in indexes],
        [m.search_text for m in memories],
        [_created(chunk, i, call_clock) for i in indexes],
        [m.valid_from for m in memories],
        [m.valid_until for m in memories],
    ]
    return columns


async def _copy(
    connection: PoolConnectionProxy[asyncpg.Record], plan: _WritePlan, actor: str
) -> None:
    """The new memories by binary COPY and their audit entries by a second one, in the
    caller's transaction."""
    await connection.copy_records_to_table("memories", records=plan.records, columns=COPY_COLUMNS)
    created = [(record[3], record[2], "create", actor, 1) for record in plan.records]
    await connection.copy_records_to_table(
        "memory_audit", records=created, columns=AUDIT_COPY_COLUMNS
    )


def _copied(chunk: _Chunk, index: int, identifier: uuid.UUID) -> Remembered:
    return Remembered(
        identifier, chunk.unique[index].namespace, True, chunk.status(index), chunk.errors[index]
    )


def _identity(kind: str, row: asyncpg.Record) -> _Identity:
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
