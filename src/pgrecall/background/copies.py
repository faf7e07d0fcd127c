"""The vector copier: copies the vectors of large namespaces' memories into ``memory_vectors``,
in the background, so their exact scan reads a narrow relation.

A long memory's row fills a page (migration 0006 keeps its text, tsvector and vector inline),
and the exact scan reads every page of its namespace; the same distances read from a relation
of the vectors alone cost 0.45x on SciFact (migration 0014, benchmarks/RESULTS.md). Writing the
copy in the remembering transaction would put a second row on every write, so ``remember``
writes none: rows arrive unflagged (``vector_copied`` false), and this copier, as the postings
mover does for keywords, takes a batch of a large namespace's unflagged embedded rows (``SKIP
LOCKED``, so several workers share the work), copies their vectors and flags them, in one
statement. Recall scans the rows not copied yet from ``memories`` beside the copies, so a new
memory is found at once. Triggers on ``memories`` drop a copy when its row's vector or space
changes (and the flag, so it is copied again) or when the row is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from pgrecall.config import Settings
from pgrecall.db.errors import database_errors
from pgrecall.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

# Namespaces of at least $1 memories with embedded rows not copied yet.
_LARGE_WITH_BACKLOG = """
    SELECT u.namespace FROM (
        SELECT DISTINCT namespace FROM memories
        WHERE NOT vector_copied AND embedding IS NOT NULL
    ) AS u
    WHERE (SELECT count(*) FROM (SELECT 1 FROM memories m WHERE m.namespace = u.namespace
                                 LIMIT $1) AS bounded) >= $1
    ORDER BY u.namespace
"""

# Every reference names the namespace ($1): on Citus the statement runs on its shard alone. A
# copy left by a row whose flag was reset outside the triggers is replaced, never doubled.
_COPY_BATCH = """
    WITH batch AS (
        SELECT namespace, id, space_id, embedding FROM memories
        WHERE namespace = $1 AND NOT vector_copied AND embedding IS NOT NULL
        LIMIT $2 FOR UPDATE SKIP LOCKED
    ), copied AS (
        INSERT INTO memory_vectors (namespace, id, space_id, embedding)
        SELECT namespace, id, space_id, embedding FROM batch
        ON CONFLICT (namespace, id)
        DO UPDATE SET space_id = EXCLUDED.space_id, embedding = EXCLUDED.embedding
    )
    UPDATE memories m SET vector_copied = true
    FROM batch b
    WHERE m.namespace = $1 AND m.namespace = b.namespace AND m.id = b.id
"""


class VectorCopier:
    """Copies the vectors of large namespaces' memories and flags them ``vector_copied``."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    async def large_namespaces_behind(self) -> list[str]:
        """Namespaces of at least ``vector_copy_min_rows`` memories with rows not copied."""
        with database_errors():
            rows = await self._pool.fetch(_LARGE_WITH_BACKLOG, self._settings.vector_copy_min_rows)
        return [row["namespace"] for row in rows]

    async def copy_batch(self, namespace: str) -> int:
        """Copy the vectors of one batch of ``namespace``'s rows; returns how many rows."""
        with database_errors():
            status = await self._pool.execute(
                _COPY_BATCH, namespace, self._settings.vector_copy_batch_size
            )
        return int(status.split()[-1])

    async def catch_up(self, stop: asyncio.Event | None = None) -> int:
        """Copy every large namespace's backlog now (or until ``stop`` is set); returns the
        rows copied."""
        copied = 0
        for namespace in await self.large_namespaces_behind():
            while not (stop and stop.is_set()) and (batch := await self.copy_batch(namespace)):
                copied += batch
        return copied

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep for large namespaces every ``index_sweep_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                copied = await self.catch_up(stop)
                if copied:
                    logger.info("copies: %d vectors copied into memory_vectors", copied)
            except DatabaseUnavailableError as exc:
                logger.warning("copies: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.index_sweep_seconds)
