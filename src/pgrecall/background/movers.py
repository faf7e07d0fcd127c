"""What the background movers share: find the large namespaces with rows not moved yet, then
move them a batch per statement until none is left, on a sweep.

Three movers take a large namespace's rows somewhere writes do not pay for: the indexer into
the HNSW graph (indexer.py), the postings mover into ``memory_terms`` (postings.py), the vector
copier into ``memory_vectors`` (copies.py). Each flags the rows it moved on ``memories``, claims
a batch with ``SKIP LOCKED`` (so several workers share the work) and does the whole batch in one
statement; they differ in their two statements, their size threshold and their batch size.

A catch-up someone waits for (``MemoryStore.index``, ``pgrecall index``) ends with a pass that
takes the rows with ``FOR UPDATE`` instead: the ``SKIP LOCKED`` loop returns as soon as the only
rows left are a batch another worker holds, before that batch commits (under load a test saw
index() return with 713 of 2,500 rows not yet in the graph), or rolls back and leaves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

import asyncpg

from pgrecall.config import Settings
from pgrecall.db.errors import database_errors
from pgrecall.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)


def large_with_backlog(unmoved: str) -> str:
    """``backlog_sql`` of a mover whose rows still to move are those where ``unmoved`` holds (a
    condition on ``memories``, fixed text): the distinct namespaces holding such rows, kept when
    a bounded count finds $1 memories in them (one namespace per count, so Citus runs each on
    its shard)."""
    return f"""
        SELECT u.namespace FROM (
            SELECT DISTINCT namespace FROM memories WHERE {unmoved}
        ) AS u
        WHERE (SELECT count(*) FROM (SELECT 1 FROM memories m WHERE m.namespace = u.namespace
                                     LIMIT $1) AS bounded) >= $1
        ORDER BY u.namespace
    """


# How a batch claims its rows (``{locking}`` in ``batch_sql``): a sweep takes the rows no one
# else holds; the last pass of a catch-up waits for them.
_SHARE = "FOR UPDATE SKIP LOCKED"
_WAIT = "FOR UPDATE"


class BatchMover(ABC):
    """A mover of large namespaces' rows: ``backlog_sql`` lists the namespaces of at least $1
    rows with rows not moved, ``batch_sql`` moves up to $2 rows of namespace $1 (naming it in
    every reference, so Citus runs it on that namespace's shard alone), claiming them where it
    says ``{locking}``, and reports their count. ``what`` says in the log what a sweep moved."""

    backlog_sql: str
    batch_sql: str
    what: str

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @abstractmethod
    def min_rows(self) -> int:
        """How many memories make a namespace large enough for this mover."""

    @abstractmethod
    def batch_size(self) -> int:
        """How many rows one statement moves."""

    async def large_namespaces_behind(self) -> list[str]:
        """Namespaces of at least ``min_rows()`` memories with rows not moved yet."""
        with database_errors():
            rows = await self._pool.fetch(self.backlog_sql, self.min_rows())
        return [row["namespace"] for row in rows]

    async def move_batch(self, namespace: str, *, wait: bool = False) -> int:
        """Move one batch of ``namespace``'s rows; returns how many rows. ``wait`` takes rows
        another transaction holds once it ends, instead of skipping them."""
        statement = self.batch_sql.format(locking=_WAIT if wait else _SHARE)
        with database_errors():
            status = await self._pool.execute(statement, namespace, self.batch_size())
        return int(status.split()[-1])

    async def catch_up(self, stop: asyncio.Event | None = None, *, wait: bool = False) -> int:
        """Move every large namespace's backlog now (or until ``stop`` is set); returns the
        rows moved here. ``wait``: also wait for the batches other workers hold, so that no row
        of a namespace found behind is left unmoved on return (rows written meanwhile may be)."""
        moved = 0
        for namespace in await self.large_namespaces_behind():
            for waiting in (False, True) if wait else (False,):
                while not (stop and stop.is_set()) and (
                    batch := await self.move_batch(namespace, wait=waiting)
                ):
                    moved += batch
        return moved

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep for large namespaces every ``index_sweep_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                moved = await self.catch_up(stop)
                if moved:
                    logger.info("%s: %d memories", self.what, moved)
            except DatabaseUnavailableError as exc:
                logger.warning("%s: %s", self.what, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.index_sweep_seconds)
