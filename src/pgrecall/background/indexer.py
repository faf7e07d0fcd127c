"""The indexer: moves the memories of large namespaces into the HNSW graph, in the background.

The HNSW index is partial (``WHERE hnsw_indexed``, migration 0005). Writes never pay for the
graph; a namespace that reaches ``exact_scan_max_rows`` memories has its rows flagged here, a
batch per transaction (``SKIP LOCKED``, so several workers share the work), and stays in the
graph from then on. Small namespaces are searched exactly and never enter it. Recall merges the
graph's candidates with an exact scan of the scope's unflagged rows, so results are right at
any point; the indexer only makes large namespaces fast.

``catch_up(rebuild=True)`` is for bulk loads and switches of space: it flags every row at once
and builds the graph in one parallel ``CREATE INDEX``, which is several times faster than
growing it row by row. While the graph is down it compacts the heap (``heap.compact_heap``):
the flags, like a switch's move, wrote every row again at the heap's end.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.background.heap import compact_heap
from pgrecall.background.movers import BatchMover
from pgrecall.db.errors import database_errors
from pgrecall.db.inspect import on_citus, vector_dimensions
from pgrecall.db.schema import HNSW_INDEX, hnsw_index_sql
from pgrecall.errors import SchemaError

_Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

logger = logging.getLogger(__name__)

# A memory size as PostgreSQL reads it: SET takes no parameter, so the value is checked before
# it is written into the statement.
_MEMORY_SIZE = re.compile(r"[1-9][0-9]{0,6}(kB|MB|GB)")

# Namespaces with rows outside the graph that are (or once were) large: either many unflagged
# rows, or at least $1 rows in all.
_LARGE_WITH_BACKLOG = """
    SELECT u.namespace FROM (
        SELECT namespace, count(*) AS unindexed FROM memories
        WHERE NOT hnsw_indexed AND embedding IS NOT NULL GROUP BY namespace
    ) AS u
    WHERE u.unindexed >= $1
       OR (SELECT count(*) FROM (SELECT 1 FROM memories m WHERE m.namespace = u.namespace
                                 LIMIT $1) AS bounded) >= $1
    ORDER BY u.namespace
"""

_FLAG_BATCH = """
    UPDATE memories m SET hnsw_indexed = true
    FROM (SELECT namespace, id FROM memories
          WHERE namespace = $1 AND NOT hnsw_indexed AND embedding IS NOT NULL
          LIMIT $2 {locking}) AS batch
    WHERE m.namespace = batch.namespace AND m.id = batch.id
"""

_FLAG_ALL = """
    UPDATE memories SET hnsw_indexed = true
    WHERE namespace = ANY($1::text[]) AND NOT hnsw_indexed AND embedding IS NOT NULL
"""


class Indexer(BatchMover):
    """Flags the rows of large namespaces so the partial HNSW index takes them in."""

    backlog_sql = _LARGE_WITH_BACKLOG
    batch_sql = _FLAG_BATCH
    what = "memories moved into the HNSW graph"

    def min_rows(self) -> int:
        # Larger than the exact-scan limit, as recall counts it (recall/sizes.py).
        return self._settings.exact_scan_max_rows + 1

    def batch_size(self) -> int:
        return self._settings.index_batch_size

    async def catch_up(
        self,
        stop: asyncio.Event | None = None,
        *,
        wait: bool = False,
        rebuild: bool = False,
        maintenance_work_mem: str = "1GB",
    ) -> int:
        """Index every large namespace's backlog now (or until ``stop`` is set); returns the
        rows flagged. ``wait`` as for every mover; ``rebuild`` drops the graph and builds it
        again in one pass (for bulk loads; recall on large namespaces is exact, so slow, while
        it runs; its UPDATE waits for held rows by itself)."""
        if rebuild:
            return await self._rebuild(await self.large_namespaces_behind(), maintenance_work_mem)
        return await super().catch_up(stop, wait=wait)

    async def _rebuild(self, namespaces: list[str], maintenance_work_mem: str) -> int:
        if not _MEMORY_SIZE.fullmatch(maintenance_work_mem):  # before anything is dropped
            raise ValueError(f"maintenance_work_mem is a size (1GB), not {maintenance_work_mem!r}")
        with database_errors():
            async with self._pool.acquire() as connection:
                # The graph's size is its expression's (embedding::vector(N)): read before the drop.
                dimensions = await vector_dimensions(connection)
                if dimensions is None:
                    raise SchemaError("the memories table is missing: run pgrecall migrate")
                await connection.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
                try:
                    status = await connection.execute(_FLAG_ALL, namespaces)
                    # Now, while no graph takes each moved row in again.
                    if not await on_citus(connection):
                        await _compact_heap(connection)
                finally:
                    await _build_graph(connection, dimensions, maintenance_work_mem)
                # The heap's compaction left a dead version of every row it moved behind (on
                # Citus the flagging did).
                await connection.execute("VACUUM (ANALYZE) memories")
        return int(status.split()[-1])


async def _compact_heap(connection: _Connection) -> None:
    """``heap.compact_heap``, logged; a database error there is logged, not raised: the rows
    are as they were (each batch is a transaction) and the heap is only larger than it could
    be, where the rebuild must go on to build the graph."""
    try:
        heap = await compact_heap(connection)
    except asyncpg.PostgresError as exc:
        # The class alone: the server's text may quote a row.
        logger.warning("heap of memories not compacted: %s", type(exc).__name__)
        return
    logger.info(
        "heap of memories: %d pages to %d, %d rows moved in %.1f s (%s)",
        heap.pages_before,
        heap.pages_after,
        heap.moved,
        heap.seconds,
        heap.stopped,
    )


async def _build_graph(connection: _Connection, dimensions: int, maintenance_work_mem: str) -> None:
    """CREATE INDEX of the graph with ``maintenance_work_mem`` (checked by the caller) for
    this build alone.

    SET LOCAL in a transaction of its own, because on Citus the shards build the graph and
    only a SET LOCAL reaches them (``citus.propagate_set_commands = local``; a session's
    set_config stays on the coordinator): a 100k namespace's shard built with the default 64MB
    took 365 s where plain PostgreSQL took 92 s at 1GB (benchmarks/citus.py, RESULTS.md)."""
    async with connection.transaction():
        if await on_citus(connection):
            await connection.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        await connection.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
        await connection.execute(hnsw_index_sql(dimensions))
