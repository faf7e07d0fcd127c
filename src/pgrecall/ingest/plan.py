"""Planning a chunk's write: its distinct memories, then the rows to copy in and to upsert.

One column spec, ``Row``, is the shape of every row ingestion writes: the binary COPY takes its
columns (``sql.COPY_COLUMNS``) and the rows themselves; the upserts' ``unnest`` arrays are its
columns transposed, in its order, typed by it (``sql.UPSERT_BY_CONTENT``/``UPSERT_BY_KEY``). A
row is built by keyword, so a value cannot land in another column by its position.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, NamedTuple, get_type_hints

from pgrecall.ingest.ids import new_ids
from pgrecall.ingest.prepare import Identity, Prepared
from pgrecall.records import EmbedStatus


class Row(NamedTuple):
    """One row of ``memories`` as ingestion writes it, new (COPY) or known (upsert).

    The fields are the columns, in the order the COPY and the upserts' arrays take them; each
    annotation's metadata is the column's SQL type, that of the upserts' ``unnest`` array. A
    tuple: COPY takes it as it is, and an upsert's arrays are the rows transposed (``upserts``).
    """

    id: Annotated[uuid.UUID, "uuid"]  # made by the client (ids.py)
    namespace: Annotated[str, "text"]
    key: Annotated[str | None, "text"]
    content: Annotated[str, "text"]
    content_hash: Annotated[bytes, "bytea"]
    metadata: Annotated[str, "jsonb"]  # JSON text
    embedding: Annotated[bytes | None, "vector"]  # pgvector's binary format
    space_id: Annotated[int | None, "int"]
    expires_at: Annotated[datetime | None, "timestamptz"]
    status: Annotated[EmbedStatus, "text"]
    embed_error: Annotated[str | None, "text"]
    search_text: Annotated[str | None, "text"]
    # A call's new rows: created_at = updated_at = the call's clock (see sql.COPY_COLUMNS).
    created_at: Annotated[datetime, "timestamptz"]
    updated_at: Annotated[datetime, "timestamptz"]


def column_types() -> dict[str, str]:
    """The SQL type of each column of ``Row``, in its order."""
    hints = get_type_hints(Row, include_extras=True)
    return {name: hints[name].__metadata__[0] for name in Row._fields}


@dataclass(slots=True)
class Chunk:
    """Distinct memories of one step, and for each input position which of them it is."""

    unique: list[Prepared]
    positions: list[tuple[int, int]]  # (input position, index into unique)
    index_of: dict[Identity, int]  # which of unique each identity is
    first_positions: list[int]  # input position where each of unique first appears
    vectors: list[bytes | None]  # pgvector's binary format
    errors: list[str | None]
    stored: set[int] = field(default_factory=set)  # indexes of memories that have a row
    # indexes of stored memories the write would not change, and their rows' ids
    unchanged: dict[int, uuid.UUID] = field(default_factory=dict)

    def writes(self, identity: Identity) -> bool:
        """Whether this chunk's write changes the memory of ``identity``."""
        index = self.index_of.get(identity)
        return index is not None and index not in self.unchanged

    def shares_memories_with(self, other: Chunk) -> bool:
        return any(identity in other.index_of for identity in self.index_of)

    def status(self, index: int) -> EmbedStatus:
        """What the row will be: embedded (vector now), failed (error), else pending."""
        if self.vectors[index] is not None:
            return "embedded"
        return "failed" if self.errors[index] is not None else "pending"


def chunk_bounds(count: int, size: int) -> list[tuple[int, int]]:
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


def dedupe(prepared: Sequence[Prepared], offset: int) -> Chunk:
    index_of: dict[Identity, int] = {}
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
    return Chunk(
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


class Upsert(NamedTuple):
    """Known memories of one identity kind, written by one upsert."""

    kind: str  # "content" or "key" (see Prepared.identity)
    indexes: list[int]  # the memories, in write order
    arrays: list[tuple[object, ...]]  # their rows' columns, in Row's order


@dataclass(frozen=True, slots=True)
class WritePlan:
    """How a chunk is written: its new memories copied in, the changed others upserted."""

    copied: list[int]  # indexes of the new memories, in write order
    records: list[Row]  # their rows, in the same order
    upserts: list[Upsert]

    def copied_as_upserts(self) -> list[Upsert]:
        """The upserts that write the new memories instead, when another writer stored one of
        them since the lookup (the COPY was refused by the unique index)."""
        return upserts(list(zip(self.records, self.copied, strict=True)))


def plan(chunk: Chunk, space_id: int, call_clock: datetime) -> WritePlan:
    """The rows of every memory of ``chunk`` the write changes, in one order for every writer
    (``write_order``): the new ones for the COPY, the others by identity kind for the
    upserts."""
    written = [index for index in range(len(chunk.unique)) if index not in chunk.unchanged]
    ids = new_ids(len(written))  # in input order, as the call's stamps
    rows = sorted(
        (
            (_row(chunk, index, identifier, space_id, call_clock), index)
            for index, identifier in zip(written, ids, strict=True)
        ),
        key=lambda pair: write_order(pair[0]),
    )
    copied = [(row, index) for row, index in rows if index not in chunk.stored]
    known = [(row, index) for row, index in rows if index in chunk.stored]
    return WritePlan(
        copied=[index for _, index in copied],
        records=[row for row, _ in copied],
        upserts=upserts(known),
    )


def upserts(rows: Sequence[tuple[Row, int]]) -> list[Upsert]:
    """The upserts that write ``rows`` (with their memories' indexes), one per identity kind,
    each in the order given."""
    kinds: dict[str, list[tuple[Row, int]]] = {"content": [], "key": []}
    for row, index in rows:
        kinds["content" if row.key is None else "key"].append((row, index))
    return [
        Upsert(
            kind, [index for _, index in pairs], list(zip(*(row for row, _ in pairs), strict=True))
        )
        for kind, pairs in kinds.items()
        if pairs
    ]


def write_order(row: Row) -> tuple[str, str, bytes]:
    """Where a row comes in every write statement: one order for all writers. Rows locked in
    other orders by two statements deadlock (SQLSTATE 40P01): 8 clients writing the same 200
    memories shuffled failed in 7 of 8 calls. PostgreSQL takes the rows of a COPY and of an
    INSERT .. SELECT FROM unnest(..) in the order given."""
    return (row.namespace, row.key or "", row.content_hash)


def _row(
    chunk: Chunk, index: int, identifier: uuid.UUID, space_id: int, call_clock: datetime
) -> Row:
    memory = chunk.unique[index]
    vector = chunk.vectors[index]
    created = _created(chunk, index, call_clock)
    return Row(
        id=identifier,
        namespace=memory.namespace,
        key=memory.key,
        content=memory.content,
        content_hash=memory.content_hash,
        metadata=memory.metadata,
        embedding=vector,
        space_id=space_id if vector is not None else None,
        expires_at=memory.expires_at,
        status=chunk.status(index),
        embed_error=chunk.errors[index],
        search_text=memory.search_text,
        created_at=created,
        updated_at=created,
    )


def _created(chunk: Chunk, index: int, call_clock: datetime) -> datetime:
    """created_at (and first updated_at) of a new row: the one given (an import keeps the
    exported time), else the call's clock plus one microsecond per input position."""
    given = chunk.unique[index].created_at
    if given is not None:
        return given
    return call_clock + timedelta(microseconds=chunk.first_positions[index])
