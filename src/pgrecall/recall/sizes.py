"""How many memories each namespace holds, counted up to a cap: enough to choose a plan.

Counted with a bounded query and cached for a few seconds per process; a writer of this process
drops the namespaces it changed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import asyncpg

from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors

SIZE_CACHE_SECONDS = 10.0


@functools.lru_cache(maxsize=64)
def _count_sql(namespaces: int) -> str:
    """Memories of each of ``namespaces`` namespaces ($2..), counted up to $1: one uncorrelated
    bounded count per namespace, so each reads one namespace (one shard on Citus, which refuses
    a count correlated with an unnest of the names)."""
    return " UNION ALL ".join(
        f"""SELECT ${n}::text AS namespace,
                   (SELECT count(*) FROM (SELECT 1 FROM memories m
                                          WHERE m.namespace = ${n}::text AND {unexpired("m")}
                                          LIMIT $1) AS bounded) AS n"""
        for n in range(2, namespaces + 2)
    )


class NamespaceSizes:
    """Bounded, cached counts of memories per namespace (enough to choose a plan)."""

    def __init__(self, pool: asyncpg.Pool, cap: int) -> None:
        self._pool = pool
        self._cap = cap
        self._cache: dict[str, tuple[float, int]] = {}

    def forget(self, namespaces: Sequence[str]) -> None:
        """Drop cached sizes after this process wrote to or deleted from these namespaces."""
        for name in namespaces:
            self._cache.pop(name, None)

    async def sizes(self, namespaces: Sequence[str]) -> dict[str, int]:
        """Memories per namespace, counted up to the cap (a namespace at the cap is large)."""
        now = time.monotonic()
        known = {
            name: entry[1]
            for name in namespaces
            if (entry := self._cache.get(name)) is not None and now - entry[0] < SIZE_CACHE_SECONDS
        }
        missing = [name for name in namespaces if name not in known]
        if missing:
            with database_errors():
                rows = await self._pool.fetch(_count_sql(len(missing)), self._cap + 1, *missing)
            for row in rows:
                known[row["namespace"]] = row["n"]
                if row["n"]:  # an empty namespace may be written by another process any moment
                    self._cache[row["namespace"]] = (now, row["n"])
        return known
