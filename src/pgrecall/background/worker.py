"""The embedding worker: gives pending memories their vectors.

Choice: the HTTP call to the embedder happens *inside* the claiming transaction. A batch is
claimed with ``SELECT .. FOR UPDATE SKIP LOCKED``, embedded, and its vectors written and the
pending state cleared in the same transaction. That holds a connection and row locks for the
length of one embed call (seconds), and buys the simplest guarantees: two workers never embed the
same memory (the second skips locked rows); a worker killed mid-batch leaves nothing claimed,
because PostgreSQL rolls its transaction back when the connection dies; no lease to expire.

On a transient failure the batch's rows record the attempt, the error and a next attempt time
(exponential backoff with jitter); after ``embed_max_attempts`` they are marked failed. A
permanent failure marks them failed at once (an over-long input only itself). Workers wake on
``NOTIFY pgrecall_pending`` and on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.background.expiry import unexpired
from pgrecall.config import Settings
from pgrecall.db.errors import database_errors
from pgrecall.db.pool import connect
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.embedding.policy import PENDING_CHANNEL, EmbedOrDefer
from pgrecall.errors import (
    DatabaseUnavailableError,
    EmbeddingError,
    EmbeddingSpaceMismatchError,
)

logger = logging.getLogger(__name__)
_Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# A batch is claimed namespace by namespace: the namespaces of the oldest due rows first
# (read without locks), then up to the rest of the batch from each, locked, until it is full.
# Each claim names its namespace: on Citus it runs on that namespace's shard alone, and Citus
# refuses FOR UPDATE across shards. On plain PostgreSQL it costs one more round trip a batch.
# Expired memories are gone (expiry.py): not worth a vector.
_DUE_NAMESPACES = f"""
    SELECT namespace FROM memories
    WHERE status = 'pending' AND embed_after <= now() AND {unexpired()}
    ORDER BY embed_after
    LIMIT $1
"""

_CLAIM = f"""
    SELECT namespace, id, coalesce(search_text, content) AS text FROM memories
    WHERE namespace = $2 AND status = 'pending' AND embed_after <= now() AND {unexpired()}
    ORDER BY embed_after
    LIMIT $1
    FOR UPDATE SKIP LOCKED
"""

# The batch's namespaces ($N, once each) are named for Citus to route, as in the claim.
_STORE_VECTORS = """
    UPDATE memories m SET embedding = done.embedding, space_id = $4, status = 'embedded',
                          embed_error = NULL
    FROM unnest($1::text[], $2::uuid[], $3::vector[]) AS done(namespace, id, embedding)
    WHERE m.namespace = done.namespace AND m.id = done.id AND m.namespace = ANY($5::text[])
"""

# Backoff doubles per attempt from $4 seconds up to $5, half of it jittered by $8 (0..1 per row,
# drawn here: Citus refuses a volatile random() in an UPDATE of a distributed table). The due
# time is built from epoch seconds: Citus also refuses a stable function fed a column (now() +
# an interval is one: timestamptz + interval is stable), and to_timestamp(float8) is immutable.
_RECORD_FAILURE = """
    UPDATE memories m SET
        embed_attempts = m.embed_attempts + 1,
        embed_error = $3,
        status = CASE WHEN $6 OR m.embed_attempts + 1 >= $7 THEN 'failed' ELSE 'pending' END,
        embed_after = to_timestamp(extract(epoch FROM now())
            + least($5::float8, $4::float8 * 2 ^ m.embed_attempts) * (0.5 + claimed.jitter / 2))
    FROM unnest($1::text[], $2::uuid[], $8::float8[]) AS claimed(namespace, id, jitter)
    WHERE m.namespace = claimed.namespace AND m.id = claimed.id AND m.namespace = ANY($9::text[])
"""

_NEXT_DUE = f"""
    SELECT extract(epoch FROM min(embed_after) - now()) FROM memories
    WHERE status = 'pending' AND {unexpired()}
"""


@dataclass
class EmbeddingWorker:
    """Claims, embeds and stores pending memories until stopped."""

    pool: asyncpg.Pool
    dsn: str  # its own connection listens for the NOTIFY of new pending memories
    embedding: EmbedOrDefer
    spaces: SpaceRegistry
    settings: Settings
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def wake(self) -> None:
        """Look for work now (this process queued some)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Handle one batch of due pending memories; returns how many were claimed."""
        size = self.settings.worker_batch_size
        with database_errors():
            async with self.pool.acquire() as connection:
                # Before the claim's transaction: on Citus the peek reads every shard, and a
                # transaction that has may not then write a reference table (the store's
                # first space, recorded in the claim when no writer recorded it).
                due = await connection.fetch(_DUE_NAMESPACES, size)
                if not due:
                    return 0
                async with connection.transaction():
                    rows = await self._claim(connection, due, size)
                    if rows:
                        await self._handle(connection, rows)
                    return len(rows)

    async def _claim(
        self, connection: _Connection, due: list[asyncpg.Record], size: int
    ) -> list[asyncpg.Record]:
        """Lock up to ``size`` due pending memories of the ``due`` rows' namespaces, a
        namespace at a time (see _CLAIM)."""
        claimed: list[asyncpg.Record] = []
        for namespace in dict.fromkeys(row["namespace"] for row in due):
            claimed += await connection.fetch(_CLAIM, size - len(claimed), namespace)
            if len(claimed) >= size:
                break
        return claimed

    async def _handle(self, connection: _Connection, rows: list[asyncpg.Record]) -> None:
        # On the claim's connection: a second one from the pool may never come (a pool of one).
        space_id = await self.spaces.ensure(self.embedding.embedder.space, connection)
        outcome = await self.embedding.embed([row["text"] for row in rows], inline=False)
        failed: dict[EmbeddingError, list[asyncpg.Record]] = {}
        for row, failure in zip(rows, outcome.failures, strict=True):
            if failure is not None:
                failed.setdefault(failure, []).append(row)
        for failure, failed_rows in failed.items():
            await self._record_failure(connection, failed_rows, failure, permanent=True)
        waiting = [row for index, row in enumerate(rows) if outcome.pending(index)]
        if outcome.deferred_by is not None and waiting:
            await self._record_failure(connection, waiting, outcome.deferred_by, permanent=False)
        done = [(row, v) for row, v in zip(rows, outcome.vectors, strict=True) if v is not None]
        if done:
            await connection.execute(
                _STORE_VECTORS,
                [row["namespace"] for row, _ in done],
                [row["id"] for row, _ in done],
                [vector for _, vector in done],
                space_id,
                _namespaces([row for row, _ in done]),
            )

    async def _record_failure(
        self,
        connection: _Connection,
        rows: list[asyncpg.Record],
        error: EmbeddingError,
        permanent: bool,
    ) -> None:
        settings = self.settings
        await connection.execute(
            _RECORD_FAILURE,
            [r["namespace"] for r in rows],
            [r["id"] for r in rows],
            str(error),
            settings.embed_backoff_seconds,
            settings.embed_backoff_max_seconds,
            permanent,
            settings.embed_max_attempts,
            [random.random() for _ in rows],
            _namespaces(rows),
        )

    async def _seconds_until_due(self) -> float:
        with database_errors():
            due = await self.pool.fetchval(_NEXT_DUE)
        poll = self.settings.worker_poll_seconds
        return poll if due is None else max(0.0, min(float(due), poll))

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; the batch in hand is finished (or rolled back when
        cancelled) first."""
        listening = asyncio.create_task(self._listen(stop))
        try:
            while not stop.is_set():
                try:
                    if await self.run_once():
                        continue
                    wait = await self._seconds_until_due()
                except DatabaseUnavailableError as exc:
                    logger.warning("embedding worker: %s", exc)
                    wait = 1.0
                except EmbeddingSpaceMismatchError as exc:
                    # The store switched spaces (pgrecall reembed): nothing to embed in this
                    # one until a rollback or a restart with the new settings.
                    logger.error("embedding worker: %s", exc)
                    wait = self.settings.worker_poll_seconds
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(self._wake, stop), wait)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def _listen(self, stop: asyncio.Event) -> None:
        """Keep a LISTEN connection (reconnecting when it drops) that wakes the loop."""
        while not stop.is_set():
            try:
                connection = await connect(self.dsn)
            except DatabaseUnavailableError:
                await asyncio.sleep(1.0)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _, lost=lost: lost.set())
            try:
                await connection.add_listener(PENDING_CHANNEL, lambda *_: self._wake.set())
                await _first(lost, stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)


def _namespaces(rows: list[asyncpg.Record]) -> list[str]:
    """The namespaces of ``rows``, once each."""
    return sorted({row["namespace"] for row in rows})


async def _first(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
