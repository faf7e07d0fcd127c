"""Expired means gone: every read leaves out memories past ``expires_at``, and the sweeper
deletes them once ``expired_grace_seconds`` more have passed.

The grace period only delays the physical delete (a wrongly set expiry can still be undone in
the database for that long); to every read, write and count a memory is gone at its expiry.
The sweeper works one namespace at a time (each statement routes to one shard on Citus), in
batches of ``SWEEP_BATCH_SIZE`` rows, each its own short transaction, taking only rows no one
else has locked (``FOR UPDATE SKIP LOCKED``): a writer never waits on it for more than one
batch's delete, and it never waits on a writer. Deleting a memory deletes its kept versions
(their foreign key cascades). The same loop deletes audit entries past their retention
(audit.py), once per sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from pgrecall.audit import AuditLog
from pgrecall.config import Settings
from pgrecall.db.errors import database_errors
from pgrecall.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

SWEEP_BATCH_SIZE = 500


def unexpired(alias: str = "") -> str:
    """The SQL condition every read adds: the memory (of table ``alias``) has not expired."""
    column = f"{alias}.expires_at" if alias else "expires_at"
    return f"({column} IS NULL OR {column} > now())"


def expired(alias: str = "") -> str:
    """Its complement for a memory with an expiry: the range of ``expires_at`` that the partial
    index ``memories_namespace_expiry`` (namespace, expires_at; migration 0016) reads."""
    column = f"{alias}.expires_at" if alias else "expires_at"
    return f"{column} <= now()"


# Read-only and across namespaces (served by the partial expires_at index, migration 0009).
_DUE_NAMESPACES = """
    SELECT DISTINCT namespace FROM memories
    WHERE expires_at < now() - make_interval(secs => $1)
    ORDER BY namespace
"""

_DELETE_BATCH = """
    DELETE FROM memories m
    USING (SELECT namespace, id FROM memories
           WHERE namespace = $1 AND expires_at < now() - make_interval(secs => $2)
           LIMIT $3 FOR UPDATE SKIP LOCKED) AS batch
    WHERE m.namespace = batch.namespace AND m.id = batch.id
"""


class ExpirySweeper:
    """Deletes memories expired for longer than the grace period, in the background."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, audit: AuditLog) -> None:
        self._pool = pool
        self._audit = audit
        self._grace = settings.expired_grace_seconds
        self._every = settings.expired_sweep_seconds

    async def sweep(self, stop: asyncio.Event | None = None) -> int:
        """Delete every memory past its grace period now (or until ``stop`` is set); returns
        how many were deleted."""
        with database_errors():
            rows = await self._pool.fetch(_DUE_NAMESPACES, self._grace)
        deleted = 0
        for row in rows:
            while not (stop and stop.is_set()):
                with database_errors():
                    status = await self._pool.execute(
                        _DELETE_BATCH, row["namespace"], self._grace, SWEEP_BATCH_SIZE
                    )
                count = int(status.split()[-1])
                deleted += count
                if count < SWEEP_BATCH_SIZE:
                    break
        return deleted

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``expired_sweep_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                deleted = await self.sweep(stop)
                if deleted:
                    logger.info("sweeper: %d expired memories deleted", deleted)
                await self._audit.prune()
            except DatabaseUnavailableError as exc:
                logger.warning("sweeper: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._every)
