"""MemoryStore: the facade that wires settings, database and embedder to the services."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import Any, Unpack, overload
from uuid import UUID

import asyncpg

from pgrecall import activity, records, validation
from pgrecall.activity import Bucket
from pgrecall.audit import AuditLog, check_actor, local_actor
from pgrecall.background.copies import VectorCopier
from pgrecall.background.expiry import ExpirySweeper
from pgrecall.background.indexer import Indexer
from pgrecall.background.postings import PostingsMover
from pgrecall.background.worker import EmbeddingWorker
from pgrecall.catalog import Catalog, memory_id, no_memory
from pgrecall.config import Settings, load_settings
from pgrecall.db import inspect, migrate
from pgrecall.db.embedded import database_dsn
from pgrecall.db.pool import create_pool
from pgrecall.embedding import lifecycle
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.embedding.health import EmbedderHealth
from pgrecall.embedding.policy import EmbedOrDefer
from pgrecall.embedding.registry import create_embedder
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import (
    ConflictError,
    DimensionMismatchError,
    InvalidInputError,
    NotFoundError,
    PgRecallError,
    SchemaError,
)
from pgrecall.ingest.context import ContextWindow, has_context, with_context
from pgrecall.ingest.prepare import prepare
from pgrecall.ingest.service import IngestionService
from pgrecall.ingest.templates import CONTENT_TEMPLATE, TextTemplates
from pgrecall.ingest.update import Change, UpdateService
from pgrecall.recall.service import QueryService
from pgrecall.recall.sizes import NamespaceSizes
from pgrecall.records import (
    UNSET,
    EmbedStatus,
    Memory,
    MemoryInput,
    RecallKeywords,
    RecallOptions,
    RecallResult,
    Remembered,
    Stats,
)
from pgrecall.transfer.exporter import Exporter, ExportScope
from pgrecall.versions import History

# Longest reason accepted by invalidate, in characters.
MAX_REASON_CHARS = 1000
# How long closing a store waits for the worker's batch before rolling it back.
SHUTDOWN_GRACE_SECONDS = 10.0


async def _check_schema(dsn: str, settings: Settings, dimensions: int) -> None:
    if settings.auto_migrate:
        await migrate.upgrade(
            dsn,
            dimensions,
            text_search_config=settings.text_search_config,
            hnsw_ef_search=settings.hnsw_ef_search,
        )
        return
    current = await migrate.current_revision(dsn)
    if current != migrate.head_revision():
        raise SchemaError(
            f"the database schema is at {current or 'nothing'}, pgrecall needs "
            f"{migrate.head_revision()}: run pgrecall migrate"
        )


async def _check_column(pool: asyncpg.Pool, dimensions: int) -> None:
    async with pool.acquire() as connection:
        column = await inspect.vector_dimensions(connection)
    if column != dimensions:
        raise DimensionMismatchError(
            f"the database stores vector({column}) but the embedder makes {dimensions}-dimensional "
            f"vectors: use the model this database was made with, set "
            f"PGRECALL_EMBED_DIMENSIONS={column}, or use another database"
        )


async def _settled_indexing(pool: asyncpg.Pool, settings: Settings) -> Settings:
    """A store built before the ``auto`` template and contextual indexing became defaults goes
    on indexing as it was built, so it opens as it did and its vectors stay of one kind: the
    content alone where it recorded '' and no template is configured, no context where it
    recorded none and no context key is configured. Configuring them there explicitly is
    refused by the space guard until the memories are re-embedded."""
    recorded = await SpaceRegistry(pool).recorded()
    if recorded is None:
        return settings
    identity = recorded[1].text_template
    changes: dict[str, str] = {}
    if "context_key" not in settings.model_fields_set and not has_context(identity):
        changes["context_key"] = ""
    configured = "index_template" in settings.model_fields_set or settings.namespace_templates
    if not configured and identity == "":
        changes["index_template"] = CONTENT_TEMPLATE
    return settings.model_copy(update=changes) if changes else settings


class MemoryStore:
    """Semantic memory for agents: ``remember`` texts, ``recall`` them by meaning.

    Open with ``await MemoryStore.open()`` (or ``async with MemoryStore.open() as store`` is not
    needed: ``async with await MemoryStore.open() as store``), and close when done.
    """

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        dsn: str,
        embedder: Embedder,
        resources: AsyncExitStack,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.templates = TextTemplates(settings.index_template, settings.namespace_templates)
        self.context = (
            ContextWindow(settings.context_key, settings.context_window)
            if settings.context_key
            else None
        )
        self._resources = resources
        self._pool = pool
        health = EmbedderHealth()
        # What the indexed text is made of, recorded in the space: templates, and the context.
        context = self.context.identity(self.templates) if self.context else None
        self.text_identity = context or self.templates.identity()
        self._spaces = SpaceRegistry(pool, self.text_identity, settings.space_recheck_seconds)
        self._sizes = NamespaceSizes(pool, settings.exact_scan_max_rows)
        self._pool = pool
        self._catalog = Catalog(pool)
        embedding = EmbedOrDefer(
            embedder, health, settings.inline_embed_timeout, settings.embed_batch_size
        )
        self._ingest = IngestionService(
            pool,
            embedding,
            self._spaces,
            settings.ingest_chunk_size,
            settings.ingest_concurrent_writes,
        )
        self._updates = UpdateService(
            pool, embedding, self._spaces, self.templates, settings.max_content_chars, self.context
        )
        self._query = QueryService(pool, embedder, self._spaces, self._sizes, settings, health)
        resources.push_async_callback(self._query.aclose)  # before the pool closes
        self.worker = EmbeddingWorker(pool, dsn, embedding, self._spaces, settings)
        self.indexer = Indexer(pool, settings)
        self.postings = PostingsMover(pool, settings)
        self.copies = VectorCopier(pool, settings)
        self._audit = AuditLog(pool, settings.audit_retention_days)
        self._history = History(pool)
        self.sweeper = ExpirySweeper(pool, settings, self._audit)
        self._actor = local_actor()
        self._exporter = Exporter(pool, self._spaces)
        self._stop_worker = asyncio.Event()
        self._worker_task: asyncio.Task[None] | None = None

    @property
    def space(self) -> EmbeddingSpace:
        """The space this store's vectors are in: its embedder's, with its indexed-text template."""
        return self._spaces.stored_as(self.embedder.space)

    def start_worker(self) -> None:
        """Run the embedding worker, the indexer, the postings mover, the vector copier and
        the expiry sweeper as a background task of this store (idempotent)."""
        if self._worker_task is None:
            self._worker_task = asyncio.create_task(self._background())

    async def _background(self) -> None:
        await asyncio.gather(
            self.worker.run(self._stop_worker),
            self.indexer.run(self._stop_worker),
            self.postings.run(self._stop_worker),
            self.copies.run(self._stop_worker),
            self.sweeper.run(self._stop_worker),
        )

    async def _stop_worker_task(self) -> None:
        """Let the worker finish its batch; roll it back if that takes too long."""
        if self._worker_task is None:
            return
        self._stop_worker.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._worker_task), SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        dsn: str | None = None,
        embedder: Embedder | None = None,
    ) -> MemoryStore:
        """Connect (starting the embedded PostgreSQL when no DSN is configured), migrate or
        check the schema, and check that the embedder fits the database."""
        settings = settings or load_settings()
        resources = AsyncExitStack()
        try:
            if embedder is None:
                embedder = create_embedder(settings)
                resources.push_async_callback(embedder.aclose)
            if dsn is None:
                dsn = await resources.enter_async_context(
                    database_dsn(settings.database_url, settings.data_dir)
                )
            dimensions = embedder.space.dimensions
            await _check_schema(dsn, settings, dimensions)
            pool = await create_pool(
                dsn,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                hnsw_ef_search=settings.hnsw_ef_search,
            )
            resources.push_async_callback(pool.close)
            await _check_column(pool, dimensions)
            settings = await _settled_indexing(pool, settings)
        except BaseException:
            await resources.aclose()
            raise
        store = cls(settings, pool, dsn, embedder, resources)
        resources.push_async_callback(store._stop_worker_task)
        if settings.worker:
            store.start_worker()
        return store

    async def close(self) -> None:
        """Stop the worker, close the pool and the embedder, let go of the embedded server."""
        await self._resources.aclose()

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @overload
    async def remember(  # type: ignore[overload-overlap]  # str is also a Sequence[str]
        self,
        content: str,
        *,
        namespace: str,
        metadata: Mapping[str, Any] | None = None,
        key: str | None = None,
        expires_at: datetime | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        actor: str | None = None,
    ) -> Remembered: ...
    @overload
    async def remember(
        self,
        content: Sequence[str | MemoryInput],
        *,
        namespace: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        key: None = None,
        expires_at: datetime | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        actor: str | None = None,
    ) -> list[Remembered]: ...
    async def remember(
        self,
        content: str | Sequence[str | MemoryInput],
        *,
        namespace: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        key: str | None = None,
        expires_at: datetime | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        actor: str | None = None,
    ) -> Remembered | list[Remembered]:
        """Store one text (returns its Remembered) or a batch (a list, in order).

        Batch items may be MemoryInput to carry their own namespace, metadata, key, expiry or
        valid time; the call's values fill in what they leave out. The batch is validated whole
        before anything is written: one invalid item raises InvalidInputError naming its
        position and field, and nothing of the call is stored. A changed text or metadata under
        a known key keeps the previous version (see ``history``). ``actor`` names who did it in
        the audit log (default: the local user).
        """
        who = self._who(actor)
        single = isinstance(content, str)
        if not single and key is not None:
            raise InvalidInputError("key names one memory: pass it per item with MemoryInput")
        raw = [content] if isinstance(content, str) else list(content)

        def with_call_values(item: str | MemoryInput) -> MemoryInput:
            if not isinstance(item, MemoryInput):
                return MemoryInput(
                    content=item,
                    key=key,
                    metadata=metadata,
                    expires_at=expires_at,
                    valid_from=valid_from,
                    valid_until=valid_until,
                )
            if metadata is None and expires_at is None and valid_from is valid_until is None:
                return item
            return dataclasses.replace(
                item,
                metadata=item.metadata if item.metadata is not None else metadata,
                expires_at=item.expires_at if item.expires_at is not None else expires_at,
                valid_from=item.valid_from if item.valid_from is not None else valid_from,
                valid_until=item.valid_until if item.valid_until is not None else valid_until,
            )

        items = [with_call_values(item) for item in raw]
        prepared = prepare(
            items,
            default_namespace=namespace,
            max_chars=self.settings.max_content_chars,
            templates=self.templates,
            space=self.space,
        )
        if self.context is not None:
            prepared = await with_context(self._pool, self.templates, self.context, prepared)
        results = await self._ingest.remember(prepared, who)
        self._sizes.forget(list({memory.namespace for memory in prepared}))
        return results[0] if single else results

    async def recall(
        self,
        query: str,
        *,
        namespace: str | Sequence[str],
        options: RecallOptions | None = None,
        **keywords: Unpack[RecallKeywords],
    ) -> RecallResult:
        """The ``k`` best memories of ``namespace`` (one or several) for ``query``.

        How to recall is a ``RecallOptions``, given whole as ``options`` or field by field as
        keywords (which override ``options``): ``k``; ``mode`` ``hybrid`` (default; vector and
        keyword rankings fused), ``vector`` or ``keyword``; ``filter`` on metadata;
        ``min_score`` bounds the vector similarity (inner product); ``created_after`` /
        ``created_before``; ``vector_weight``/``keyword_weight`` (fusion weights),
        ``diversity`` 0..1 (MMR), ``recency_half_life`` in seconds and ``importance`` (a
        metadata key holding 0..1); ``exact=True`` forces an exact vector scan; ``as_of``
        answers from the versions that were current at that time (an exact scan);
        ``valid_at`` keeps the facts valid then; facts whose validity has ended are left out
        unless ``include_invalid``; ``neighbours=n`` returns each hit with up to ``n``
        memories before and after it in its thread (``PGRECALL_CONTEXT_KEY``), within ``k``.
        """
        chosen = options or RecallOptions()
        if keywords:
            try:
                chosen = dataclasses.replace(chosen, **keywords)
            except TypeError as exc:  # a keyword that is not an option
                raise InvalidInputError(f"recall: {exc}") from None
        return await self._query.recall(query, namespace, chosen)

    async def get(self, memory: UUID | str, *, namespace: str | None = None) -> Memory:
        """One memory by id; NotFoundError if there is none."""
        identifier = memory_id(memory)
        found = await self._catalog.get(identifier, namespace)
        if found is None:
            raise no_memory(identifier)
        return found

    async def get_keyed(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Memory]:
        """The memories stored under these (namespace, key) pairs; pairs with none are left
        out. One statement for the whole list."""
        return await self._catalog.by_keys(keys)

    async def update(
        self,
        memory: UUID | str,
        *,
        namespace: str | None = None,
        content: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        expires_at: datetime | records.Unset | None = UNSET,
        actor: str | None = None,
    ) -> Memory:
        """Change a memory's text (embedded again), metadata (replaced) or expiry (None
        clears it); returns the memory as stored now. A new text or metadata makes a new
        version, the previous one kept in its history."""
        who = self._who(actor)
        current = await self.get(memory, namespace=namespace)
        change = Change(content=content, metadata=metadata, expires_at=expires_at)
        await self._updates.update(current, change, who)
        # As written, even when the change was an expiry in the past (it is gone from now on).
        updated = await self._catalog.get(current.id, current.namespace, expired=True)
        if updated is None:
            raise no_memory(current.id)
        return updated

    async def forget(
        self,
        ids: Sequence[UUID | str] | None = None,
        *,
        namespace: str | None = None,
        filter: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> int:
        """Delete memories by id, or those of ``namespace`` matching ``filter`` (``{}`` means
        all of them), with every version's text and vector; returns how many were deleted.
        The audit log keeps that it happened (id, who, when), never what they said."""
        who = self._who(actor)
        if ids is not None:
            if filter is not None:
                raise InvalidInputError("forget takes ids or a filter, not both")
            identifiers = [memory_id(i) for i in ids]
            deleted = await self._catalog.forget_ids(identifiers, namespace, who)
            self._sizes.forget(list({name for _, name in deleted}))
            return len(deleted)
        if namespace is None or filter is None:
            raise InvalidInputError(
                "forget needs ids, or a namespace and a filter ({} forgets the whole namespace)"
            )
        count = await self._catalog.forget_matching(namespace, filter, who)
        self._sizes.forget([validation.namespace(namespace)])
        return count

    async def stats(
        self, *, namespace: str | None = None, scope: ExportScope | None = None
    ) -> Stats:
        """How many memories, embedded or not, and the last write, per namespace (all, one, or
        those of ``scope``); the store's active space, any being built (with its progress over
        the whole store) and the one kept for a rollback."""
        counts = await self._catalog.stats(namespace, scope)
        spaces = await lifecycle.overview(self._pool)
        return dataclasses.replace(
            counts,
            space=spaces.active.space if spaces.active else None,
            building=spaces.building,
            previous_space=spaces.previous.space if spaces.previous else None,
        )

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Database reachable, schema at head, embedder answering: (all fine, detail each)."""
        detail: dict[str, str] = {}
        ok = True
        try:
            revision = await self._catalog.revision()
            detail["database"] = "reachable"
            head = migrate.head_revision()
            detail["migrations"] = f"at {revision}" + ("" if revision == head else f", head {head}")
            ok = revision == head
        except PgRecallError as exc:
            detail["database"] = detail["migrations"] = str(exc)
            ok = False
        try:
            detail["embedder"] = await self.embedder.ping()
        except PgRecallError as exc:
            detail["embedder"] = str(exc)
            ok = False
        return ok, detail

    async def pending_count(self) -> int:
        """Memories waiting for a vector, in every namespace."""
        return await self._catalog.pending_count()

    async def index(self, *, rebuild: bool = False) -> int:
        """Move the rows of large namespaces into the HNSW graph, their keyword postings into
        ``memory_terms`` and their vectors into ``memory_vectors``, now instead of waiting for
        the worker; ``rebuild`` rebuilds the graph in one pass (after a bulk load). Returns the
        rows moved into the graph here. On return every row of those namespaces written before
        the call has been moved, by this call or by a worker it waited for."""
        # Postings and copies first: flagging rewrites the rows, which a rebuild's VACUUM then
        # cleans.
        await self.postings.catch_up(wait=True)
        await self.copies.catch_up(wait=True)
        return await self.indexer.catch_up(wait=True, rebuild=rebuild)

    async def writes(
        self, scope: ExportScope | None = None, *, bucket: Bucket = "day", buckets: int = 30
    ) -> list[records.WriteCount]:
        """Memories created and changed per UTC hour or day, the last ``buckets`` of them up to
        now, in ``scope`` (every namespace by default): what a chart of writes draws."""
        return await activity.writes(self._pool, scope or ExportScope.everything(), bucket, buckets)

    async def retry_failed(
        self, *, namespace: str | None = None, memory: UUID | str | None = None
    ) -> int:
        """Queue failed memories again (after pulling the model, say): all of them, a
        namespace's, or one ``memory`` (give its namespace too); returns how many."""
        identifier = memory_id(memory) if memory is not None else None
        count = await self._catalog.retry_failed(namespace, identifier)
        if count:
            self.worker.wake()
        return count

    def export(
        self, scope: ExportScope | None = None, *, with_vectors: bool = False
    ) -> AsyncIterator[list[MemoryInput]]:
        """The memories of ``scope`` (every namespace by default) as MemoryInput that
        ``remember`` takes back, in pages, oldest first; with their vectors and spaces if asked.
        Read in keyset pages: memory stays constant whatever the size of the store."""
        return self._exporter.pages(scope or ExportScope.everything(), with_vectors=with_vectors)

    async def list(
        self,
        namespace: str | Sequence[str] | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: EmbedStatus | None = None,
        filter: Mapping[str, Any] | None = None,
        as_of: datetime | None = None,
    ) -> records.Page:
        """A page of memories, newest first: a namespace's (or several namespaces'), or every
        namespace's with a given ``status`` (e.g. ``"failed"``); ``filter`` keeps those whose
        metadata matches, as in recall; as they were at ``as_of`` when given (one namespace).
        Follow ``next_cursor``."""
        return await self._catalog.page(
            namespace, limit=limit, cursor=cursor, status=status, filter=filter, as_of=as_of
        )

    async def namespaces(self, prefix: str = "", *, limit: int = 1000) -> builtins.list[str]:
        """The namespaces that hold memories and start with ``prefix``, in order (at most
        ``limit``)."""
        return await self._catalog.namespaces(prefix, limit=limit)

    async def history(
        self,
        memory: UUID | str | None = None,
        *,
        namespace: str | None = None,
        key: str | None = None,
    ) -> builtins.list[records.Version]:
        """Every version of a memory, oldest first, each with its text, metadata and the span
        it was current; the memory named by id, or by ``key`` inside ``namespace``."""
        if (memory is None) == (key is None):
            raise InvalidInputError("history takes a memory id or a key, one of them")
        if key is not None:
            if namespace is None:
                raise InvalidInputError("a key names a memory inside a namespace: name it too")
            found = await self._history.id_of_key(namespace, key)
            if found is None:
                raise NotFoundError(f"no memory with key {key!r} in namespace {namespace!r}")
            memory = found
        current = await self.get(memory, namespace=namespace)  # type: ignore[arg-type]
        return await self._history.versions(current.namespace, current.id)

    async def invalidate(
        self,
        memory: UUID | str,
        *,
        namespace: str | None = None,
        at: datetime | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Memory:
        """End a fact's validity at ``at`` (now by default) without deleting it, saying why:
        recall leaves it out from then on unless ``include_invalid``; returns the memory.

        A fact already invalid (its ``valid_until`` passed) keeps its first end and reason:
        ConflictError saying since when, and nothing changes, in the audit either. One whose
        end is still to come gets the new one."""
        who = self._who(actor)
        if reason is not None:
            reason = validation.content(reason, MAX_REASON_CHARS)
        current = await self.get(memory, namespace=namespace)
        outcome = await self._catalog.invalidate(
            current.id, current.namespace, at=at, reason=reason, actor=who
        )
        if outcome == "missing":
            raise no_memory(current.id)
        latest = await self.get(current.id, namespace=current.namespace)
        if outcome == "already":
            since = f" since {latest.valid_until.isoformat()}" if latest.valid_until else ""
            raise ConflictError(
                f"memory {latest.id} is already invalid{since}: its first end is kept"
            )
        return latest

    async def audit(
        self,
        namespace: str,
        *,
        memory: UUID | str | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> builtins.list[records.AuditEntry]:
        """The audit log of a namespace (of one memory, when given), newest first; pass the
        last entry's ``at`` as ``before`` for the next page."""
        identifier = memory_id(memory) if memory is not None else None
        return await self._audit.entries(
            namespace, memory_id=identifier, before=before, limit=limit
        )

    def _who(self, actor: str | None) -> str:
        return self._actor if actor is None else check_actor(actor)
