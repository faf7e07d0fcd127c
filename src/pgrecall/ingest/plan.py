"""Planning a chunk's write: its distinct memories, then the rows to copy in and to upsert.

One column spec, ``Columns``, is the shape of what ingestion writes: the binary COPY takes its
column names (``sql.COPY_COLUMNS``) and its rows, the upserts take its columns as their
``unnest`` arrays, in its order, typed by it (``sql.UPSERT_BY_CONTENT``/``UPSERT_BY_KEY``). The
columns are built by name, so a value cannot land in another column by its position.
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, NamedTuple, TypedDict, get_type_hints

from pgrecall.ingest.ids import new_ids
from pgrecall.ingest.prepare import Identity, Prepared
from pgrecall.records import EmbedStatus


class Columns(TypedDict):
    """The one column spec: the columns of ``memories`` ingestion writes, each holding the
    values of a chunk's rows, in the order the COPY and the upserts' arrays take them; each
    annotation's metadata is the column's SQL type (that of the upserts' ``unnest`` array).

    Columns, not rows: built by name, one comprehension each, then zipped into the COPY's rows
    in C. Rows built by keyword (a NamedTuple) cost 1.4 us more per memory in the plan (3.6
    against 2.2 us), 4 % of the client's time per memory.
    """

    id: Annotated[list[uuid.UUID], "uuid"]  # made by the client (ids.py)
    namespace: Annotated[list[str], "text"]
    key: Annotated[list[str | None], "text"]
    content: Annotated[list[str], "text"]
    content_hash: Annotated[list[bytes], "bytea"]
    metadata: Annotated[list[str], "jsonb"]  # JSON text
    embedding: Annotated[list[bytes | None], "vector"]  # pgvector's binary format
    space_id: Annotated[list[int | None], "int"]
    expires_at: Annotated[list[datetime | None], "timestamptz"]
    status: Annotated[list[EmbedStatus], "text"]
    embed_error: Annotated[list[str | None], "text"]
    search_text: Annotated[list[str | None], "text"]
    # A call's new rows: created_at = updated_at = the call's clock (see sql.COPY_COLUMNS).
    created_at: Annotated[list[datetime], "timestamptz"]
    updated_at: Annotated[list[datetime], "timestamptz"]
    valid_from: Annotated[list[datetime | None], "timestamptz"]  # valid time, the agent's
    valid_until: Annotated[list[datetime | None], "timestamptz"]


COLUMN_NAMES: tuple[str, ...] = tuple(Columns.__annotations__)
_IN_COLUMN_ORDER = operator.itemgetter(*COLUMN_NAMES)


def column_types() -> dict[str, str]:
    """The SQL type of each column of the spec, in its order."""
    hints = get_type_hints(Columns, include_extras=True)
    return {name: hints[name].__metadata__[0] for name in COLUMN_NAMES}


def arrays(columns: Columns) -> list[list[object]]:
    """The columns in the spec's order: an upsert's arguments."""
    return list(_IN_COLUMN_ORDER(columns))


def rows(columns: Columns) -> list[tuple[object, ...]]:
    """The rows of the columns, their values in the spec's order: the COPY's records."""
    return list(zip(*_IN_COLUMN_ORDER(columns), strict=True))


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
    arrays: list[list[object]]  # their columns, in the spec's order


@dataclass(frozen=True, slots=True)
class WritePlan:
    """How a chunk is written: its new memories copied in, the changed others upserted."""

    copied: list[int]  # indexes of the new memories, in write order
    copied_columns: Columns  # their rows, as columns
    records: list[tuple[object, ...]]  # their rows
    upserts: list[Upsert]
    space_id: int
    call_clock: datetime
    ids: dict[int, uuid.UUID]  # of every memory written, by index

    def copied_as_upserts(self, chunk: Chunk) -> list[Upsert]:
        """The upserts that write the new memories instead, when another writer stored one of
        them since the lookup (the COPY was refused by the unique index)."""
        return upserts(chunk, self.copied, self.ids, self.space_id, self.call_clock)


def plan(chunk: Chunk, space_id: int, call_clock: datetime) -> WritePlan:
    """The rows of every memory of ``chunk`` the write changes, in one order for every writer
    (``write_order``): the new ones for the COPY, the others by identity kind for the
    upserts."""
    written = [index for index in range(len(chunk.unique)) if index not in chunk.unchanged]
    # In input order, as the call's stamps.
    ids = dict(zip(written, new_ids(len(written)), strict=True))
    ordered = sorted(written, key=lambda index: write_order(chunk.unique[index]))
    copied = [index for index in ordered if index not in chunk.stored]
    known = [index for index in ordered if index in chunk.stored]
    columns = _columns(chunk, copied, ids, space_id, call_clock)
    return WritePlan(
        copied=copied,
        copied_columns=columns,
        records=rows(columns),
        upserts=upserts(chunk, known, ids, space_id, call_clock),
        space_id=space_id,
        call_clock=call_clock,
        ids=ids,
    )


def upserts(
    chunk: Chunk,
    indexes: list[int],
    ids: dict[int, uuid.UUID],
    space_id: int,
    call_clock: datetime,
) -> list[Upsert]:
    """The upserts that write the memories at ``indexes``, one per identity kind, each in the
    order given."""
    unkeyed = [index for index in indexes if chunk.unique[index].key is None]
    keyed = [index for index in indexes if chunk.unique[index].key is not None]
    return [
        Upsert(kind, kind_indexes, arrays(_columns(chunk, kind_indexes, ids, space_id, call_clock)))
        for kind, kind_indexes in (("content", unkeyed), ("key", keyed))
        if kind_indexes
    ]


def write_order(memory: Prepared) -> tuple[str, str, bytes]:
    """Where a memory's row comes in every write statement: one order for all writers. Rows
    locked in other orders by two statements deadlock (SQLSTATE 40P01): 8 clients writing the
    same 200 memories shuffled failed in 7 of 8 calls. PostgreSQL takes the rows of a COPY and
    of an INSERT .. SELECT FROM unnest(..) in the order given."""
    return (memory.namespace, memory.key or "", memory.content_hash)


def _columns(
    chunk: Chunk,
    indexes: list[int],
    ids: dict[int, uuid.UUID],
    space_id: int,
    call_clock: datetime,
) -> Columns:
    """The rows of the memories at ``indexes`` of ``chunk``, as columns, by name."""
    memories = [chunk.unique[index] for index in indexes]
    vectors = [chunk.vectors[index] for index in indexes]
    created = [_created(chunk, index, call_clock) for index in indexes]
    return {
        "id": [ids[index] for index in indexes],
        "namespace": [memory.namespace for memory in memories],
        "key": [memory.key for memory in memories],
        "content": [memory.content for memory in memories],
        "content_hash": [memory.content_hash for memory in memories],
        "metadata": [memory.metadata for memory in memories],
        "embedding": vectors,
        "space_id": [space_id if vector is not None else None for vector in vectors],
        "expires_at": [memory.expires_at for memory in memories],
        "status": [chunk.status(index) for index in indexes],
        "embed_error": [chunk.errors[index] for index in indexes],
        "search_text": [memory.search_text for memory in memories],
        "created_at": created,
        "updated_at": created,
        "valid_from": [memory.valid_from for memory in memories],
        "valid_until": [memory.valid_until for memory in memories],
    }


def _created(chunk: Chunk, index: int, call_clock: datetime) -> datetime:
    """created_at (and first updated_at) of a new row: the one given (an import keeps the
    exported time), else the call's clock plus one microsecond per input position."""
    given = chunk.unique[index].created_at
    if given is not None:
        return given
    return call_clock + timedelta(microseconds=chunk.first_positions[index])
