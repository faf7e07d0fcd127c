"""What each MCP tool does: the caller's scope checked, MemoryStore called, the REST answer made.

The checks are the REST API's own (``Access``, ``visible_memory``, ``check_batch``); the only
rule of this front end is that a call naming no namespace gets the scope's default one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from uuid import UUID

from pgrecall.api import schemas as answers
from pgrecall.api.access import Access, visible_memory
from pgrecall.errors import InvalidInputError
from pgrecall.mcp.arguments import (
    AuditArgs,
    ForgetArgs,
    GetArgs,
    HistoryArgs,
    InvalidateArgs,
    ListArgs,
    RecallArgs,
    RememberArgs,
    StatsArgs,
    UpdateArgs,
)
from pgrecall.records import UNSET, MemoryInput
from pgrecall.store import MemoryStore


@dataclass(frozen=True, slots=True)
class Scope:
    """What one caller may touch (a launch's namespaces, or an API key's), and how many memories
    one remember call may carry."""

    access: Access
    max_batch: int

    def namespace(self, named: str | None) -> str:
        """``named``, or the default one when the call names none; refused outside the access."""
        chosen = named if named is not None else self.access.default_namespace
        if chosen is None:
            raise InvalidInputError("name a namespace: this server has no default one")
        self.access.require([chosen])
        return chosen


async def remember(
    store: MemoryStore, scope: Scope, args: RememberArgs
) -> answers.RememberResponse:
    """Store ``content`` or each of ``memories``; every namespace is checked before any write."""
    if args.content is not None:
        namespace = scope.namespace(args.namespace)
        items = [MemoryInput(content=args.content, namespace=namespace, key=args.key)]
    else:
        batch = args.memories or []  # the shape holds content or memories
        answers.check_batch(len(batch), scope.max_batch)
        items = [item.to_input(scope.namespace(item.namespace or args.namespace)) for item in batch]
    results = await store.remember(
        items, metadata=args.metadata, expires_at=args.expires_at, actor=scope.access.actor
    )
    return answers.RememberResponse.of(results)


async def recall(store: MemoryStore, scope: Scope, args: RecallArgs) -> answers.RecallResponse:
    """The best memories for the query in the named (or default) namespaces."""
    names = args.namespaces or [scope.namespace(args.namespace)]
    scope.access.require(names)
    return answers.RecallResponse.of(await store.recall(args.query, namespace=names, options=args))


async def get(store: MemoryStore, scope: Scope, args: GetArgs) -> answers.MemoryOut:
    """One memory the caller may see."""
    return answers.MemoryOut.of(await visible_memory(args.id, scope.access, store))


async def list_page(store: MemoryStore, scope: Scope, args: ListArgs) -> answers.PageOut:
    """A page of one namespace's memories, newest first."""
    namespace = scope.namespace(args.namespace)
    page = await store.list(namespace, limit=args.limit, cursor=args.cursor, status=args.status)
    return answers.PageOut(
        memories=[answers.MemoryOut.of(memory) for memory in page.memories],
        next_cursor=page.next_cursor,
    )


async def update(store: MemoryStore, scope: Scope, args: UpdateArgs) -> answers.MemoryOut:
    """Change a memory the caller may see; ``expires_at`` left out keeps the expiry."""
    current = await visible_memory(args.id, scope.access, store)
    expires_at = args.expires_at if "expires_at" in args.model_fields_set else UNSET
    updated = await store.update(
        current.id,
        namespace=current.namespace,
        content=args.content,
        metadata=args.metadata,
        expires_at=expires_at,
        actor=scope.access.actor,
    )
    return answers.MemoryOut.of(updated)


async def forget(store: MemoryStore, scope: Scope, args: ForgetArgs) -> answers.ForgetResponse:
    """Delete by ids (each checked before any is deleted) or by namespace and filter."""
    if args.filter is not None:  # the shape holds ids or a filter
        namespace = scope.namespace(args.namespace)
        return answers.ForgetResponse(
            forgotten=await store.forget(
                namespace=namespace, filter=args.filter, actor=scope.access.actor
            )
        )
    by_namespace: dict[str, list[UUID]] = defaultdict(list)
    for memory_id in dict.fromkeys(args.ids or []):
        memory = await visible_memory(memory_id, scope.access, store)
        by_namespace[memory.namespace].append(memory.id)
    forgotten = 0
    for namespace, ids in by_namespace.items():
        forgotten += await store.forget(list(ids), namespace=namespace, actor=scope.access.actor)
    return answers.ForgetResponse(forgotten=forgotten)


async def history(store: MemoryStore, scope: Scope, args: HistoryArgs) -> answers.HistoryOut:
    """Every version of a memory the caller may see, oldest first."""
    current = await visible_memory(args.id, scope.access, store)
    return answers.HistoryOut.of(
        current, await store.history(current.id, namespace=current.namespace)
    )


async def invalidate(store: MemoryStore, scope: Scope, args: InvalidateArgs) -> answers.MemoryOut:
    """End the validity of a fact the caller may see, without deleting it."""
    current = await visible_memory(args.id, scope.access, store)
    ended = await store.invalidate(
        current.id,
        namespace=current.namespace,
        at=args.at,
        reason=args.reason,
        actor=scope.access.actor,
    )
    return answers.MemoryOut.of(ended)


async def audit(store: MemoryStore, scope: Scope, args: AuditArgs) -> answers.AuditOut:
    """The audit log of the named (or default) namespace, newest first."""
    namespace = scope.namespace(args.namespace)
    entries = await store.audit(
        namespace, memory=args.memory_id, before=args.before, limit=args.limit
    )
    return answers.AuditOut.of(entries)


async def stats(store: MemoryStore, scope: Scope, args: StatsArgs) -> answers.StatsOut:
    """Counts of the named (or default) namespace; of all of them for an unbounded caller that
    names none and has no default."""
    if args.namespace is None and scope.access.default_namespace is None:
        scope.access.require_everything("stats")
        return answers.StatsOut.of(await store.stats())
    return answers.StatsOut.of(await store.stats(namespace=scope.namespace(args.namespace)))
