"""The postings mover: writes the keyword postings of large namespaces' memories, in the
background.

BM25 over a large namespace reads ``memory_terms`` (namespace, lexeme, memory, tf, dl) for the
query's lexemes instead of every matching tsvector (migration 0013, ``recall.sql``). Writing
the postings in the remembering transaction cost 30-56 % of the write rate
(``benchmarks/keyword_postings.py``), so ``remember`` writes none: rows arrive unflagged
(``terms_indexed`` false), and this mover, as the indexer does for the graph, takes a batch of
a large namespace's unflagged rows (``SKIP LOCKED``, so several workers share the work), writes
their postings from their tsvectors, flags them and adds them to the namespace's count of moved
rows (``memory_term_counts``, BM25's N, migration 0015), in one statement. Recall reads the
tsvectors of the rows not moved yet beside the postings, so a new memory is found at once.
Triggers on ``memories`` drop a moved row's postings and take it off the count when its text
changes (and its flag, so it is moved again) or when it is deleted.
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

# Namespaces of at least $1 memories with rows not moved yet.
_LARGE_WITH_BACKLOG = """
    SELECT u.namespace FROM (
        SELECT DISTINCT namespace FROM memories WHERE NOT terms_indexed
    ) AS u
    WHERE (SELECT count(*) FROM (SELECT 1 FROM memories m WHERE m.namespace = u.namespace
                                 LIMIT $1) AS bounded) >= $1
    ORDER BY u.namespace
"""

# Every reference names the namespace ($1): on Citus the statement runs on its shard alone.
_MOVE_BATCH = """
    WITH batch AS (
        SELECT namespace, id, search FROM memories
        WHERE namespace = $1 AND NOT terms_indexed
        LIMIT $2 FOR UPDATE SKIP LOCKED
    ), posted AS (
        INSERT INTO memory_terms (namespace, lexeme, memory_id, tf, dl)
        SELECT b.namespace, t.lexeme, b.id, cardinality(t.positions), length(b.search)
        FROM batch b, unnest(b.search) AS t
    ), counted AS (
        INSERT INTO memory_term_counts AS c (namespace, documents)
        SELECT $1, count(*) FROM batch HAVING count(*) > 0
        ON CONFLICT (namespace) DO UPDATE SET documents = c.documents + excluded.documents
    )
    UPDATE memories m SET terms_indexed = true
    FROM batch b
    WHERE m.namespace = $1 AND m.namespace = b.namespace AND m.id = b.id
"""


class PostingsMover:
    """Writes the postings of large namespaces' memories and flags them ``terms_indexed``."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    async def large_namespaces_behind(self) -> list[str]:
        """Namespaces of at least ``keyword_postings_min_rows`` memories with rows not moved."""
        with database_errors():
            rows = await self._pool.fetch(
                _LARGE_WITH_BACKLOG, self._settings.keyword_postings_min_rows
            )
        return [row["namespace"] for row in rows]

    async def move_batch(self, namespace: str) -> int:
        """Write the postings of one batch of ``namespace``'s rows; returns how many rows."""
        with database_errors():
            status = await self._pool.execute(
                _MOVE_BATCH, namespace, self._settings.keyword_postings_batch_size
            )
        return int(status.split()[-1])

    async def catch_up(self, stop: asyncio.Event | None = None) -> int:
        """Move every large namespace's backlog now (or until ``stop`` is set); returns the
        rows moved."""
        moved = 0
        for namespace in await self.large_namespaces_behind():
            while not (stop and stop.is_set()) and (batch := await self.move_batch(namespace)):
                moved += batch
        return moved

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep for large namespaces every ``index_sweep_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                moved = await self.catch_up(stop)
                if moved:
                    logger.info("postings: %d memories moved into memory_terms", moved)
            except DatabaseUnavailableError as exc:
                logger.warning("postings: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.index_sweep_seconds)
