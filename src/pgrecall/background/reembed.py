"""Re-embedding: gives every memory a vector in the building space (``pgrecall reembed``).

The vectors go to ``space_vectors`` with the hash of the text they were made from; the memory's
row, its active vector and every process serving it are untouched until the switch
(switch.py). What is done is what ``space_vectors`` holds, so a re-run after a kill continues
with the memories still missing and never embeds one twice; a memory changed meanwhile (another
text hash) or written meanwhile (by processes still on the old model) is missing again, and the
run goes round until none is.

Choice, as the embedding worker's (worker.py): the embedder is called *inside* the claiming
transaction. A batch of one namespace's missing memories is claimed with ``FOR NO KEY UPDATE
SKIP LOCKED``, embedded, and written before the commit: several processes share the work (each
skips the others' rows), a process killed mid-batch leaves nothing claimed or half-written (its
transaction rolls back), no lease to expire. A writer changing a claimed memory waits for that
one batch. Each claim names its namespace: on Citus it runs on that namespace's shard alone.

Each claim walks its namespace in id order from where the previous batch ended (a cursor in the
process, the primary key on disk), so a batch reads the next batch's memories and their missing
vectors, not every memory done before it: claimed from the start of the namespace each time,
a claim half-way through one namespace of 10,000 read 5,000 memories and 5,000 vectors
(159 ms), and the build of 100k ran at ~200 vectors/s. A pass visits each namespace once;
what it skipped (held by another process, which may die) or what was written behind its cursor
is missing still, and the next pass takes it.

The throttle (``rate``, texts per second per process) sleeps after each batch for the rest of
the batch's share of time, so Ollama keeps serving live traffic.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from pgrecall.db.errors import database_errors
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.lifecycle import EMBEDDED_TEXT, missing_vector

_NAMESPACES = f"""
    SELECT DISTINCT m.namespace FROM memories m WHERE {missing_vector("$1", "$2")}
    ORDER BY m.namespace
"""


def _claim(after: bool) -> str:
    """The next batch of missing memories of namespace ``$3`` in id order (after id ``$5``
    with ``after``), read through the primary key from where the previous batch ended."""
    cursor = " AND m.id > $5" if after else ""
    missing = missing_vector("$1", "$2", "$3", "$5" if after else None)
    return f"""
    SELECT m.namespace, m.id, {EMBEDDED_TEXT} AS text FROM memories m
    WHERE m.namespace = $3{cursor} AND {missing}
    ORDER BY m.id
    LIMIT $4
    FOR NO KEY UPDATE OF m SKIP LOCKED
"""


_CLAIM_FIRST, _CLAIM_AFTER = _claim(after=False), _claim(after=True)

# The claimed rows still missing, read with a new snapshot: the claim's snapshot may predate
# another process's commit of the same rows (it held them, committed, and let go between the
# claim's snapshot and its lock), and locking a row that was not updated does not re-check it.
_STILL_MISSING = f"""
    SELECT m.id FROM memories m
    WHERE m.namespace = $3 AND m.id = ANY($4::uuid[]) AND {missing_vector("$1", "$2", "$3")}
"""

_STORE = """
    INSERT INTO space_vectors (namespace, memory_id, space_id, text_hash, embedding)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (namespace, memory_id, space_id)
    DO UPDATE SET text_hash = EXCLUDED.text_hash, embedding = EXCLUDED.embedding
"""

# How long a pass waits when every missing memory is claimed by other processes.
_BUSY_WAIT_SECONDS = 0.2


def text_hash(text: str) -> bytes:
    """The hash ``space_vectors.text_hash`` keeps: as lifecycle.TEXT_HASH computes it in SQL."""
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Batch:
    """What one claim did: how many memories it embedded, and the last id it claimed (where
    the next claim of its namespace starts; None when nothing was left to claim)."""

    embedded: int
    last: UUID | None


@dataclass
class Reembedder:
    """Embeds the memories of the active space into the building one, batch by batch."""

    pool: asyncpg.Pool
    embedder: Embedder  # configured for the building space
    active_id: int
    building_id: int
    batch_size: int
    rate: float | None = None  # texts per second, None for as fast as the embedder goes

    async def namespaces(self) -> list[str]:
        """The namespaces with memories still missing a vector in the building space."""
        with database_errors():
            rows = await self.pool.fetch(_NAMESPACES, self.active_id, self.building_id)
        return [row["namespace"] for row in rows]

    async def batch(self, namespace: str, after: UUID | None = None) -> Batch:
        """Claim, embed and store the next batch of ``namespace`` after id ``after``."""
        claim = (self.active_id, self.building_id, namespace, self.batch_size)
        with database_errors():
            async with self.pool.acquire() as connection, connection.transaction():
                if after is None:
                    rows = await connection.fetch(_CLAIM_FIRST, *claim)
                else:
                    rows = await connection.fetch(_CLAIM_AFTER, *claim, after)
                if not rows:
                    return Batch(0, None)
                last = rows[-1]["id"]
                still = await connection.fetch(
                    _STILL_MISSING,
                    self.active_id,
                    self.building_id,
                    namespace,
                    [row["id"] for row in rows],
                )
                missing = {row["id"] for row in still}
                rows = [row for row in rows if row["id"] in missing]
                if not rows:
                    return Batch(0, last)  # all done meanwhile by another process
                texts = [row["text"] for row in rows]
                embedded = await self.embedder.embed_documents(texts)
                await connection.executemany(
                    _STORE,
                    [
                        (row["namespace"], row["id"], self.building_id, text_hash(text), vector)
                        for row, text, vector in zip(rows, texts, embedded.vectors, strict=True)
                    ],
                )
                return Batch(len(rows), last)

    async def run(
        self, progress: Callable[[int], None] | None = None, stop: asyncio.Event | None = None
    ) -> int:
        """Embed until no memory is missing (or ``stop`` is set); returns how many this process
        embedded. ``progress`` is told each batch's size. Each pass walks every namespace once
        in id order; what it skipped (claimed by another process) or what was written behind
        its cursor meanwhile is left for the next pass."""
        embedded = 0
        while not (stop and stop.is_set()):
            namespaces = await self.namespaces()
            if not namespaces:
                break
            moved = 0
            for namespace in namespaces:
                after: UUID | None = None
                while not (stop and stop.is_set()):
                    started = time.monotonic()
                    batch = await self.batch(namespace, after)
                    if batch.last is None:
                        break
                    after = batch.last
                    if batch.embedded:
                        moved += batch.embedded
                        if progress is not None:
                            progress(batch.embedded)
                        await self._throttle(batch.embedded, time.monotonic() - started)
            embedded += moved
            if not moved:  # what is left is claimed by other processes: let them finish
                await asyncio.sleep(_BUSY_WAIT_SECONDS)
        return embedded

    async def _throttle(self, count: int, spent: float) -> None:
        if self.rate:
            await asyncio.sleep(max(0.0, count / self.rate - spent))
