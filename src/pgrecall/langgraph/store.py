"""PgRecallStore: LangGraph's long-term memory (``BaseStore``) over a pgrecall MemoryStore.

A LangGraph agent swaps ``AsyncPostgresStore.from_conn_string(...)`` for
``PgRecallStore.open(...)`` and keeps its calls: ``put``/``get``/``search``/``delete``/
``list_namespaces``, sync and async, with TTLs. What it gains over PostgresStore: namespace
prefixes that never leak (``paths``), query search that is pgrecall's hybrid recall (meaning
and keywords, the query embedded as a query, filters applied inside the ranking statement), and
items stored with ``index=False`` that cost no embedding.

The store is async at heart: its pool lives on the event loop it was opened on. The sync methods
hand their work to that loop, so they must be called from another thread (as LangGraph runs sync
nodes); called on the loop itself they raise instead of deadlocking.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from pgrecall.config import Settings
from pgrecall.errors import InvalidInputError
from pgrecall.langgraph import items
from pgrecall.langgraph.paths import NamespaceCodec
from pgrecall.records import Memory, MemoryInput
from pgrecall.store import MemoryStore

DEFAULT_ROOT = "langgraph/"
# A search names the namespaces under its prefix to recall; past this many, a narrower prefix.
MAX_SEARCH_NAMESPACES = 1000
# list_namespaces reads the names under its fixed prefix before matching wildcards and depth.
MAX_LISTED_NAMESPACES = 100_000


class PgRecallStore(BaseStore):
    """A LangGraph ``BaseStore`` whose items are pgrecall memories under ``root``.

    ``index={"fields": [...]}`` chooses which parts of a value are embedded (LangGraph's path
    syntax, default ``["$"]``: the whole value); ``dims`` and ``embed`` are ignored, the
    MemoryStore's embedder is used. ``ttl`` is LangGraph's TTLConfig (``default_ttl`` minutes,
    ``refresh_on_read``); expired items are gone from reads at once and swept by pgrecall's
    background sweeper.
    """

    supports_ttl = True

    def __init__(
        self,
        memories: MemoryStore,
        *,
        root: str = DEFAULT_ROOT,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
    ) -> None:
        self.memories = memories
        self.paths = NamespaceCodec(root)
        self.fields: list[str] = list((index or {}).get("fields") or [items.WHOLE_VALUE])
        self.ttl_config = ttl
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        dsn: str | None = None,
        root: str = DEFAULT_ROOT,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
    ) -> AsyncIterator[PgRecallStore]:
        """Open a MemoryStore (settings from the environment by default) and wrap it; both
        close when the block ends."""
        async with await MemoryStore.open(settings, dsn=dsn) as memories:
            yield cls(memories, root=root, index=index, ttl=ttl)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``abatch`` on the store's event loop, from another thread."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("create PgRecallStore inside the event loop that opened its store")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("on the store's event loop, use the async methods (aput, aget...)")
        return asyncio.run_coroutine_threadsafe(self.abatch(ops), loop).result()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order; consecutive puts and deletes go to the database together."""
        pending = list(ops)
        for op in pending:
            validate_op_namespace(op)
        results: list[Result] = [None] * len(pending)
        start = 0
        while start < len(pending):
            op = pending[start]
            if isinstance(op, PutOp):
                end = start
                while end < len(pending) and isinstance(pending[end], PutOp):
                    end += 1
                await self._put([p for p in pending[start:end] if isinstance(p, PutOp)])
                start = end
                continue
            if isinstance(op, GetOp):
                results[start] = await self._get(op)
            elif isinstance(op, SearchOp):
                results[start] = await self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[start] = await self._list_namespaces(op)
            else:
                raise InvalidInputError(f"unknown store operation {type(op).__name__}")
            start += 1
        return results

    async def _put(self, puts: Sequence[PutOp]) -> None:
        """The last operation on each item wins, as if they ran one by one."""
        final = {(self.paths.encode(op.namespace), op.key): op for op in puts}
        writes: list[MemoryInput] = []
        deletes: list[tuple[str, str]] = []
        now = datetime.now(UTC)
        for (namespace, key), op in final.items():
            if op.value is None:
                deletes.append((namespace, key))
                continue
            fields = None if op.index is False else (op.index or self.fields)
            writes.append(
                items.memory_input(
                    namespace,
                    key,
                    op.value,
                    fields=fields,
                    space=self.memories.space,
                    ttl=op.ttl,
                    expires_at=now + timedelta(minutes=op.ttl) if op.ttl is not None else None,
                )
            )
        if deletes:
            await self._forget(await self.memories.get_keyed(deletes))
        if writes:
            await self.memories.remember(writes)

    async def _forget(self, found: Sequence[Memory]) -> None:
        by_namespace: dict[str, list[Any]] = defaultdict(list)
        for memory in found:
            by_namespace[memory.namespace].append(memory.id)
        for namespace, ids in by_namespace.items():
            await self.memories.forget(ids, namespace=namespace)

    async def _get(self, op: GetOp) -> Item | None:
        found = await self.memories.get_keyed([(self.paths.encode(op.namespace), op.key)])
        if not found:
            return None
        if op.refresh_ttl:
            await self._refresh(found)
        return items.item(found[0], tuple(op.namespace))

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        names = await self._names_under(op.namespace_prefix)
        if not names:
            return []
        wanted = op.offset + op.limit
        found: list[tuple[Memory, float | None]]
        if op.query:
            result = await self.memories.recall(
                op.query,
                namespace=names,
                k=wanted,
                filter=items.pgrecall_filter(op.filter, indexed_only=True),
            )
            hits = list(result)[op.offset :]
            stored = {
                (memory.namespace, memory.key): memory
                for memory in await self.memories.get_keyed(
                    [(hit.namespace, hit.key or "") for hit in hits]
                )
            }
            found = [
                (stored[(hit.namespace, hit.key)], hit.score)
                for hit in hits
                if (hit.namespace, hit.key) in stored
            ]
        else:
            page = await self.memories.list(
                names, limit=wanted, filter=items.pgrecall_filter(op.filter, indexed_only=False)
            )
            found = [(memory, None) for memory in page.memories[op.offset :]]
        if op.refresh_ttl:
            await self._refresh([memory for memory, _ in found])
        return [
            items.search_item(memory, self._tuple(memory.namespace), score)
            for memory, score in found
        ]

    async def _names_under(self, prefix: tuple[str, ...]) -> list[str]:
        """The pgrecall namespaces of the tuples under ``prefix`` (made by this store)."""
        names = await self.memories.namespaces(
            self.paths.encode(prefix), limit=MAX_SEARCH_NAMESPACES + 1
        )
        if len(names) > MAX_SEARCH_NAMESPACES:
            raise InvalidInputError(
                f"more than {MAX_SEARCH_NAMESPACES} namespaces under {prefix!r}: search a "
                "longer prefix"
            )
        return [name for name in names if self.paths.decode(name) is not None]

    def _tuple(self, namespace: str) -> tuple[str, ...]:
        decoded = self.paths.decode(namespace)
        return decoded if decoded is not None else ()

    async def _refresh(self, found: Sequence[Memory]) -> None:
        """Push back the expiry of items stored with a TTL: it counts from the last access."""
        now = datetime.now(UTC)
        for memory in found:
            ttl = items.ttl_minutes(memory)
            if ttl is not None:
                await self.memories.update(
                    memory.id, namespace=memory.namespace, expires_at=now + timedelta(minutes=ttl)
                )

    async def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conditions = op.match_conditions or ()
        fixed: tuple[str, ...] = ()
        for condition in conditions:
            if condition.match_type == "prefix":
                fixed = _fixed_start(condition.path)
                break
        names = await self.memories.namespaces(
            self.paths.encode(fixed), limit=MAX_LISTED_NAMESPACES
        )
        decoded = (self.paths.decode(name) for name in names)
        matching = {
            namespace[: op.max_depth] if op.max_depth is not None else namespace
            for namespace in decoded
            if namespace is not None and all(_matches(namespace, c) for c in conditions)
        }
        return sorted(matching)[op.offset : op.offset + op.limit]


def _fixed_start(path: Sequence[str]) -> tuple[str, ...]:
    """The labels of a prefix pattern before its first wildcard."""
    fixed: list[str] = []
    for label in path:
        if label == "*":
            break
        fixed.append(label)
    return tuple(fixed)


def _matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    path = tuple(condition.path)
    if len(path) > len(namespace):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(want in ("*", label) for want, label in zip(path, part, strict=True))
