"""Moving a store to another embedding space: what ``pgrecall reembed`` does, over its own pool.

It does not open a ``MemoryStore``: its settings name the *new* space, which the store's guard
would refuse until the switch. The memories' indexed text (templates, context) is kept as
stored: a re-embedding changes the model, size and prefixes, not what is embedded.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType

import asyncpg

from pgrecall.background.compaction import Compaction, Progress, compact
from pgrecall.background.copies import VectorCopier
from pgrecall.background.heap import local_heap_pages
from pgrecall.background.indexer import Indexer
from pgrecall.background.reembed import Reembedder
from pgrecall.background.switch import Switched, drop_old, settle, switch
from pgrecall.config import Settings
from pgrecall.db import migrate
from pgrecall.db.embedded import database_dsn
from pgrecall.db.pool import create_pool
from pgrecall.embedding import lifecycle
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.lifecycle import SpaceState
from pgrecall.embedding.registry import create_embedder
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import ConflictError, SchemaError
from pgrecall.records import SpaceBuild

# Added to the processes' recheck interval before stragglers are queued again (switch.settle).
_SETTLE_MARGIN_SECONDS = 0.5


class SpaceMover:
    """Builds the configured space, switches to it, rolls back, drops the old vectors."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        resources: AsyncExitStack,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self._pool = pool
        self._resources = resources
        self._embedder = embedder

    @classmethod
    async def open(
        cls, settings: Settings, *, dsn: str | None = None, embedder: Embedder | None = None
    ) -> SpaceMover:
        """Connect (the embedded PostgreSQL without a DSN) to a schema at head. The new space's
        embedder comes from ``settings`` unless ``embedder`` is given (then the caller closes it,
        as with ``MemoryStore.open``)."""
        resources = AsyncExitStack()
        try:
            if dsn is None:
                dsn = await resources.enter_async_context(
                    database_dsn(settings.database_url, settings.data_dir)
                )
            current = await migrate.current_revision(dsn)
            if current != migrate.head_revision():
                raise SchemaError(
                    f"the database schema is at {current or 'nothing'}, pgrecall needs "
                    f"{migrate.head_revision()}: run pgrecall migrate"
                )
            pool = await create_pool(dsn, min_size=1, max_size=max(2, settings.pool_max_size))
            resources.push_async_callback(pool.close)
        except BaseException:
            await resources.aclose()
            raise
        return cls(settings, pool, resources, embedder)

    async def close(self) -> None:
        """Close the embedder and the pool, let go of the embedded server."""
        await self._resources.aclose()

    async def __aenter__(self) -> SpaceMover:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _configured(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings)
            self._resources.push_async_callback(self._embedder.aclose)
        return self._embedder

    async def overview(self) -> lifecycle.Overview:
        """The active space, the one being built (with progress), the one kept for rollback."""
        return await lifecycle.overview(self._pool)

    async def begin(self) -> tuple[SpaceState, SpaceBuild]:
        """Register the configured space as the one being built; the active space and the
        build's progress so far."""
        embedder = self._configured()
        active_now = (await lifecycle.states(self._pool)).get("active")
        # The indexed text stays as stored, so the new space keeps the active one's template.
        template = active_now.space.text_template if active_now else ""
        target = dataclasses.replace(embedder.space, text_template=template)
        active, _ = await lifecycle.begin_build(self._pool, target)
        progress = (await self.overview()).building
        if progress is None:  # another process switched to it in between
            raise ConflictError(f"{target.describe()} is no longer being built")
        return active, progress

    async def build(
        self, progress: Callable[[int], None] | None = None, stop: asyncio.Event | None = None
    ) -> int:
        """Embed every memory still missing a vector in the building space (``begin`` first);
        returns how many this process embedded."""
        found = await lifecycle.states(self._pool)
        active, building = found.get("active"), found.get("building")
        if active is None or building is None:
            raise ConflictError("no space is being built: run pgrecall reembed")
        worker = Reembedder(
            self._pool,
            self._configured(),
            active.id,
            building.id,
            self.settings.reembed_batch_size,
            self.settings.reembed_rate,
        )
        return await worker.run(progress, stop)

    async def switch(
        self,
        *,
        rollback: bool = False,
        compact_indexes: bool = True,
        compacting: Progress | None = None,
    ) -> Switched:
        """Make the built space active (the previous one with ``rollback``); once processes on
        the old settings have seen it, queue again what they wrote meanwhile, copy the vectors
        of large namespaces again and rebuild their graph; then, unless ``compact_indexes`` is
        false, compact the other indexes of ``memories`` (``compacting`` follows it; see
        ``compact``).

        The compaction is the default: without it keyword recall after a move ran 1.10-1.11x
        the first space's (98 buffers a statement against 87 before any move), with it
        0.91-1.04x (83 buffers). It once made the first bulk import after the switch 0.22-0.28x
        as fast, from the order its rebuilds gave the indexes' OIDs (a planner tie, see
        ``compaction``); rebuilt in the right order, that import runs as fast as without it.
        benchmarks/RESULTS.md, issue 21, sessions 13 and 14.

        The switch's triggers drop every copy of the old space (migration 0014); left to a
        worker, a large namespace's exact recall read its long rows meanwhile: 1.2-1.8x slower
        at 20,000 memories (benchmarks/RESULTS.md, issue 21 session 12). Copies first, as
        ``MemoryStore.index`` does: flagging them rewrites the rows, which the graph's rebuild
        then vacuums."""
        if not rollback:
            await self._require_configured_build()
        pages_before = await local_heap_pages(self._pool)
        switched = await switch(self._pool, rollback=rollback)
        await asyncio.sleep(self.settings.space_recheck_seconds + _SETTLE_MARGIN_SECONDS)
        requeued = await settle(self._pool, switched.old)
        await VectorCopier(self._pool, self.settings).catch_up()
        # The heap too is compacted there, while the graph is down (heap.compact_heap).
        await Indexer(self._pool, self.settings).catch_up(rebuild=True)
        # Last: the copies and the graph's flags rewrite the rows again.
        compaction = await compact(self._pool, compacting) if compact_indexes else None
        return dataclasses.replace(
            switched,
            requeued=switched.requeued + requeued,
            compaction=compaction,
            heap_pages=_pages(pages_before, await local_heap_pages(self._pool)),
        )

    async def compact(self, progress: Progress | None = None) -> Compaction:
        """Rebuild the indexes of ``memories`` a switch left half-empty (the end of ``switch``;
        again after one was interrupted)."""
        return await compact(self._pool, progress)

    async def drop_old(self) -> SpaceState:
        """Free the previous space's vectors (no rollback to it afterwards)."""
        return await drop_old(self._pool)

    async def _require_configured_build(self) -> None:
        building = (await lifecycle.states(self._pool)).get("building")
        configured = self._configured().space
        if building is not None and not _same_model(building.space, configured):
            raise ConflictError(
                f"{building.space.describe()} is being built, but these settings describe "
                f"{configured.describe()}: switch with the settings of the space built"
            )


def _pages(before: int | None, after: int | None) -> tuple[int, int] | None:
    return None if before is None or after is None else (before, after)


def _same_model(built: EmbeddingSpace, configured: EmbeddingSpace) -> bool:
    """Equal but for the indexed-text template (kept from the active space by ``begin``)."""
    return dataclasses.replace(configured, text_template=built.text_template) == built
