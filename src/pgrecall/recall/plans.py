"""Whether the exact recall of one namespace runs on generic plans, forced (``db/plan_cache``).

A generic plan knows no namespace. PostgreSQL prices ``namespace = $1`` at the rows of the
table over its namespaces, capped by the most common namespace's share (selfuncs.c,
``var_eq_non_const``). With namespaces of like sizes that is a small namespace, read by its
index as a custom plan reads it; beside a far larger one it is not (1M rows and two of 1,000:
334,000 rows, a sequential scan for every recall of a small one). So generic plans are forced
only while that average namespace is within ``exact_scan_max_rows``, the largest namespace the
exact plans are written for. Without statistics (a table never analysed) PostgreSQL keeps the
choice, and on Citus, whose coordinator holds none for ``memories`` and plans for the shards.

The statistics change when the table is analysed: they are read again after
``GATE_CACHE_SECONDS``.
"""

from __future__ import annotations

import time

import asyncpg

from pgrecall.db.errors import database_errors
from pgrecall.db.inspect import on_citus
from pgrecall.db.schema import MEMORIES

GATE_CACHE_SECONDS = 60.0

# The table's rows as the planner counts them (its rows a page when last analysed, times its
# pages now: plancat.c estimate_rel_size), and the statistics of its namespace column.
_NAMESPACE_STATISTICS = f"""
    SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0
                THEN c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::int)
                ELSE c.reltuples END::float8 AS rows,
           s.null_frac, s.n_distinct,
           (s.most_common_freqs)[1]::float8 AS most_common
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stats s
      ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'namespace'
    WHERE c.oid = '{MEMORIES}'::regclass
"""


def _average_namespace(statistics: asyncpg.Record) -> float | None:
    """The rows a generic plan expects of ``namespace = $1``; None without statistics."""
    rows, distinct = statistics["rows"], statistics["n_distinct"]
    if rows <= 0 or distinct is None:
        return None
    # A negative n_distinct is a share of the rows (the count grows with the table).
    namespaces = distinct if distinct > 0 else -distinct * rows
    share = (1.0 - statistics["null_frac"]) / max(namespaces, 1.0)
    if statistics["most_common"] is not None:
        share = min(share, statistics["most_common"])
    return float(rows * share)


class GenericPlanGate:
    """Whether the namespaces' statistics let one small namespace's recall force generic plans
    (the module's docstring), read at most every ``GATE_CACHE_SECONDS``."""

    def __init__(self, pool: asyncpg.Pool, max_rows: int) -> None:
        self._pool = pool
        self._max_rows = max_rows
        self._open = False
        self._read_at: float | None = None
        self._citus: bool | None = None

    async def open(self) -> bool:
        """Whether generic plans may be forced now."""
        if self._citus is None:
            with database_errors():
                async with self._pool.acquire() as connection:
                    self._citus = await on_citus(connection)
        if self._citus:
            return False
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= GATE_CACHE_SECONDS:
            average = await self.average_namespace()
            self._open = average is not None and average <= self._max_rows
            self._read_at = now
        return self._open

    async def average_namespace(self) -> float | None:
        """The rows a generic plan expects of ``namespace = $1`` now; None without
        statistics."""
        with database_errors():
            statistics = await self._pool.fetchrow(_NAMESPACE_STATISTICS)
        return None if statistics is None else _average_namespace(statistics)
