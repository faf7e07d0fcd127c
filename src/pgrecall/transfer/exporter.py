"""Export: the memories of a scope as JSONL (see ``transfer``) that ``import`` reads back.

Memory stays constant whatever the size of the store: namespaces are found one after the other
(a loose index scan, one index probe each; no list of them is held), and each namespace is read
in keyset pages of ``EXPORT_PAGE`` rows in (created_at, id) order, its own index. Every page
names its namespace, so under Citus it routes to one shard. No transaction or cursor is held
across pages (an HTTP client may read slowly): a memory written during an export may or may not
be in it, and every memory stored from its start to its end is in it exactly once, since
neither ``created_at`` nor ``id`` ever changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO
from uuid import UUID

import asyncpg

from pgrecall import validation
from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors
from pgrecall.db.params import SqlParams
from pgrecall.db.retry import with_replays
from pgrecall.db.vectors import float32_values
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.offload import off_loop
from pgrecall.records import Embedding, MemoryInput, Stats
from pgrecall.transfer.lines import encode_line

EXPORT_PAGE = 1000

_NEXT_NAMESPACE = "SELECT min(namespace) FROM memories WHERE namespace > $1"
_COLUMNS = "id, content, metadata, key, created_at, expires_at, space_id"
# The vector as bytes (pgvector's binary format without its header): no float object is made.
_VECTOR = "substring(vector_send(embedding) FROM 5) AS vector"


def _page_statements(with_vectors: bool) -> tuple[str, str]:
    """The first and the next page's SELECT; the vector is read only when it is exported.
    Expired means gone: an export that kept them would bring them back on import."""
    columns = f"{_COLUMNS}, {_VECTOR}" if with_vectors else f"{_COLUMNS}, NULL::bytea AS vector"
    first = f"""
        SELECT {columns} FROM memories WHERE namespace = $1 AND {unexpired()}
        ORDER BY created_at, id LIMIT $2
    """
    following = f"""
        SELECT {columns} FROM memories WHERE namespace = $1 AND (created_at, id) > ($3, $4)
          AND {unexpired()}
        ORDER BY created_at, id LIMIT $2
    """
    return first, following


_PAGES = {with_vectors: _page_statements(with_vectors) for with_vectors in (False, True)}


@dataclass(frozen=True, slots=True)
class ExportScope:
    """The namespaces an export covers: exact ``names`` and every name starting with one of
    ``prefixes`` (the prefix ``""`` covers all of them)."""

    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def everything(cls) -> ExportScope:
        """Every namespace of the store."""
        return cls(prefixes=("",))

    @classmethod
    def of(cls, names: Sequence[str]) -> ExportScope:
        """These namespaces (validated, without repeats)."""
        return cls(names=tuple(validation.namespaces(names)))

    def covers(self, namespace: str) -> bool:
        """Whether ``namespace`` is in this scope."""
        return namespace in self.names or namespace.startswith(self.prefixes)

    def condition(self, params: SqlParams, column: str = "namespace") -> str:
        """This scope as an SQL condition on ``column``, its names and prefixes bound (``^@``
        is PostgreSQL's starts-with: a prefix holding ``%`` or ``_`` means itself)."""
        if "" in self.prefixes:
            return "true"
        names = f"{column} = ANY({params.add(list(self.names), 'text[]')})"
        if not self.prefixes:
            return names
        return f"({names} OR {column} ^@ ANY({params.add(list(self.prefixes), 'text[]')}))"


class Exporter:
    """Reads the memories of a scope, page by page."""

    def __init__(
        self, pool: asyncpg.Pool, spaces: SpaceRegistry, page_size: int = EXPORT_PAGE
    ) -> None:
        self._pool = pool
        self._spaces = spaces
        self._page_size = page_size

    async def pages(
        self, scope: ExportScope, *, with_vectors: bool = False
    ) -> AsyncIterator[list[MemoryInput]]:
        """The scope's memories as MemoryInput (all fields set), namespace by namespace, oldest
        first, in lists of at most ``page_size``; with their vectors and spaces if asked."""
        spaces = await self._spaces.every() if with_vectors else {}
        async for namespace in self._namespaces(scope):
            after: tuple[datetime, UUID] | None = None
            more = True
            while more:
                rows = await with_replays(partial(self._page, namespace, after, with_vectors))
                if not rows:
                    break
                more = len(rows) == self._page_size
                after = (rows[-1]["created_at"], rows[-1]["id"])
                # Decoding a page of long memories took 0.4 s: off the loop (one policy).
                page = await off_loop(len(rows), partial(_memories, namespace, rows, spaces))
                del rows  # one page's rows in memory at a time, not two
                yield page

    async def _namespaces(self, scope: ExportScope) -> AsyncIterator[str]:
        if not scope.prefixes:
            for name in scope.names:
                yield name
            return
        last = ""  # sorts before every namespace (none is empty)
        while True:
            found = await with_replays(partial(self._next_namespace, last))
            if found is None:
                return
            if scope.covers(found):
                yield found
            last = found

    async def _next_namespace(self, after: str) -> str | None:
        with database_errors():
            found: str | None = await self._pool.fetchval(_NEXT_NAMESPACE, after)
        return found

    async def _page(
        self, namespace: str, after: tuple[datetime, UUID] | None, with_vectors: bool
    ) -> list[asyncpg.Record]:
        first, following = _PAGES[with_vectors]
        with database_errors():
            if after is None:
                return await self._pool.fetch(first, namespace, self._page_size)
            return await self._pool.fetch(following, namespace, self._page_size, *after)


def _memories(
    namespace: str, rows: list[asyncpg.Record], spaces: dict[int, EmbeddingSpace]
) -> list[MemoryInput]:
    return [_memory(namespace, row, spaces) for row in rows]


def _memory(namespace: str, row: asyncpg.Record, spaces: dict[int, EmbeddingSpace]) -> MemoryInput:
    embedding = None
    space = spaces.get(row["space_id"]) if row["vector"] is not None else None
    if space is not None:
        embedding = Embedding(space, float32_values(row["vector"]))
    return MemoryInput(
        content=row["content"],
        namespace=namespace,
        metadata=json.loads(row["metadata"]),
        key=row["key"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        embedding=embedding,
    )


def export_total(stats: Stats, scope: ExportScope) -> int:
    """How many memories an export of ``scope`` writes, from the store's ``stats``."""
    return sum(item.memories for item in stats.namespaces if scope.covers(item.namespace))


async def export_chunks(
    pages: AsyncIterator[list[MemoryInput]],
    on_progress: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """JSONL in UTF-8, one chunk per page; ``on_progress`` gets the count written so far."""
    written = 0
    async for page in pages:
        yield await off_loop(len(page), partial(_encode_page, page))
        written += len(page)
        if on_progress is not None:
            on_progress(written)


def _encode_page(page: list[MemoryInput]) -> bytes:
    return "".join(encode_line(memory) for memory in page).encode()


async def write_export(
    pages: AsyncIterator[list[MemoryInput]],
    sink: BinaryIO,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write the JSONL of ``pages`` to ``sink``; returns how many memories."""
    written = 0

    def count(so_far: int) -> None:
        nonlocal written
        written = so_far
        if on_progress is not None:
            on_progress(so_far)

    async for chunk in export_chunks(pages, count):
        sink.write(chunk)
    sink.flush()
    return written


@contextlib.contextmanager
def export_target(target: str) -> Iterator[BinaryIO]:
    """Standard output for ``-``; else a new file in the target's folder that replaces the
    target only when the block succeeds, so a failed export never leaves half a backup (the
    file is readable by its owner only: memories may be private)."""
    if target == "-":
        yield sys.stdout.buffer
        return
    path = Path(target)
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as sink:
            yield sink
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
