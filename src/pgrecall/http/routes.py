"""The endpoints. Each checks the caller's namespaces, calls MemoryStore, shapes the answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest
from pydantic import AwareDatetime

from pgrecall.activity import MAX_BUCKETS, Bucket
from pgrecall.api.access import Access, visible_memory
from pgrecall.api.schemas import (
    AuditOut,
    ErrorResponse,
    ForgetRequest,
    ForgetResponse,
    HistoryOut,
    InvalidateRequest,
    MemoryOut,
    MemoryPatch,
    NamespacesOut,
    NamespaceStatsOut,
    PageOut,
    Readiness,
    RecallRequest,
    RecallResponse,
    RememberRequest,
    RememberResponse,
    StatsOut,
    Status,
    WriteCountOut,
    WritesOut,
    check_batch,
    hit_json,
)
from pgrecall.audit import MAX_AUDIT_PAGE
from pgrecall.catalog import MAX_PAGE
from pgrecall.errors import ConflictError, PgRecallError
from pgrecall.http.auth import access
from pgrecall.http.lean_route import LeanJsonRoute
from pgrecall.http.metrics import Metrics
from pgrecall.http.rendering import json_answer
from pgrecall.records import UNSET
from pgrecall.store import MemoryStore
from pgrecall.transfer.exporter import ExportScope, export_chunks
from pgrecall.validation import MAX_NAMESPACE_LENGTH

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 422, 503)
}
api = APIRouter(prefix="/v1", responses=ERRORS)
probes = APIRouter()
Caller = Annotated[Access, Depends(access)]
NamespaceQuery = Query(min_length=1, max_length=MAX_NAMESPACE_LENGTH)
NDJSON = "application/x-ndjson"


async def _store(request: Request) -> MemoryStore:
    # Dependencies are async: FastAPI runs a plain function in its thread pool, a hop that
    # cost more than the function.
    store: MemoryStore = request.app.state.store
    return store


StoreDependency = Annotated[MemoryStore, Depends(_store)]


@api.post("/memories", response_model=RememberResponse)
async def remember(
    body: RememberRequest, request: Request, caller: Caller, store: StoreDependency
) -> RememberResponse:
    """Store one or many memories; each comes back embedded, pending or failed."""
    check_batch(len(body.memories), request.app.state.max_batch)
    caller.require(item.namespace for item in body.memories)
    results = await store.remember(
        [item.to_input(item.namespace) for item in body.memories], actor=caller.actor
    )
    return RememberResponse.of(results)


async def recall(body: RecallRequest, request: Request) -> Response:
    """The k memories closest in meaning to the query, best first."""
    # The hot path: the caller and the store are looked up here rather than solved as two
    # dependencies, which cost FastAPI 30-40 us a request (issue 22, RESULTS.md); a JSON body
    # is handed over by LeanJsonRoute, past FastAPI's per-request handler.
    caller = await access(request)
    store: MemoryStore = request.app.state.store
    caller.require(body.namespaces)
    result = await store.recall(body.query, namespace=body.namespaces, options=body)
    answer = RecallResponse.of(result, with_hits=False)
    return json_answer(answer, "hits", result, hit_json)


api.add_api_route(
    "/recall",
    recall,
    methods=["POST"],
    response_model=RecallResponse,
    route_class_override=LeanJsonRoute,
)


@api.get("/memories/{memory_id}", response_model=MemoryOut)
async def get_memory(memory_id: UUID, caller: Caller, store: StoreDependency) -> MemoryOut:
    """One memory by id."""
    return MemoryOut.of(await visible_memory(memory_id, caller, store))


@api.patch("/memories/{memory_id}", response_model=MemoryOut)
async def update_memory(
    memory_id: UUID, body: MemoryPatch, caller: Caller, store: StoreDependency
) -> MemoryOut:
    """Change text (embedded again), metadata (replaced) or expiry (null clears it)."""
    current = await visible_memory(memory_id, caller, store)
    expires_at = body.expires_at if "expires_at" in body.model_fields_set else UNSET
    updated = await store.update(
        memory_id,
        namespace=current.namespace,
        content=body.content,
        metadata=body.metadata,
        expires_at=expires_at,
        actor=caller.actor,
    )
    return MemoryOut.of(updated)


@api.post("/memories/{memory_id}:invalidate", response_model=MemoryOut)
async def invalidate_memory(
    memory_id: UUID, body: InvalidateRequest, caller: Caller, store: StoreDependency
) -> MemoryOut:
    """End a fact's validity without deleting it; recall leaves it out unless asked. 409 if it
    has ended already: it keeps its first end."""
    current = await visible_memory(memory_id, caller, store)
    ended = await store.invalidate(
        memory_id, namespace=current.namespace, at=body.at, reason=body.reason, actor=caller.actor
    )
    return MemoryOut.of(ended)


@api.get("/memories/{memory_id}/history", response_model=HistoryOut)
async def memory_history(memory_id: UUID, caller: Caller, store: StoreDependency) -> HistoryOut:
    """Every version of a memory, oldest first, with the span each was current."""
    current = await visible_memory(memory_id, caller, store)
    return HistoryOut.of(current, await store.history(memory_id, namespace=current.namespace))


@api.get("/audit", response_model=AuditOut)
async def audit(
    caller: Caller,
    store: StoreDependency,
    namespace: Annotated[str, NamespaceQuery],
    memory_id: UUID | None = None,
    before: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
) -> AuditOut:
    """A namespace's audit log (of one memory, when given), newest first."""
    caller.require([namespace])
    entries = await store.audit(namespace, memory=memory_id, before=before, limit=limit)
    return AuditOut.of(entries)


@api.delete("/memories/{memory_id}", response_model=ForgetResponse)
async def delete_memory(memory_id: UUID, caller: Caller, store: StoreDependency) -> ForgetResponse:
    """Forget one memory."""
    current = await visible_memory(memory_id, caller, store)
    forgotten = await store.forget([memory_id], namespace=current.namespace, actor=caller.actor)
    return ForgetResponse(forgotten=forgotten)


@api.post("/memories/{memory_id}:retry", response_model=MemoryOut)
async def retry_memory(memory_id: UUID, caller: Caller, store: StoreDependency) -> MemoryOut:
    """Queue a failed memory for embedding again (attempts reset); 409 if it is not failed."""
    current = await visible_memory(memory_id, caller, store)
    if not await store.retry_failed(namespace=current.namespace, memory=memory_id):
        raise ConflictError(f"memory {memory_id} is {current.status}, not failed: nothing to retry")
    return MemoryOut.of(await store.get(memory_id, namespace=current.namespace))


@api.get("/memories", response_model=PageOut)
async def list_memories(
    caller: Caller,
    store: StoreDependency,
    namespace: Annotated[str | None, NamespaceQuery] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    status: Status | None = None,
    as_of: AwareDatetime | None = None,
) -> Response:
    """A page of memories, newest first: a namespace's, or (with ``status``) all of them;
    as they were at ``as_of`` when given."""
    if namespace is None:
        caller.require_everything("listing")
    else:
        caller.require([namespace])
    page = await store.list(namespace, limit=limit, cursor=cursor, status=status, as_of=as_of)
    answer = PageOut(memories=[], next_cursor=page.next_cursor)
    return json_answer(answer, "memories", page.memories, MemoryOut.json_of)


@api.post("/memories:forget", response_model=ForgetResponse)
async def forget(body: ForgetRequest, caller: Caller, store: StoreDependency) -> ForgetResponse:
    """Forget the namespace's memories that match the filter."""
    caller.require([body.namespace])
    return ForgetResponse(
        forgotten=await store.forget(
            namespace=body.namespace, filter=body.filter, actor=caller.actor
        )
    )


@api.get("/stats", response_model=StatsOut)
async def stats(
    caller: Caller,
    store: StoreDependency,
    namespace: Annotated[str | None, NamespaceQuery] = None,
) -> StatsOut:
    """Counts per namespace, pending and failed, the oldest pending age, the space."""
    if namespace is None:
        caller.require_everything("stats")
    else:
        caller.require([namespace])
    return StatsOut.of(await store.stats(namespace=namespace))


@api.get("/namespaces", response_model=NamespacesOut)
async def namespaces(caller: Caller, store: StoreDependency) -> NamespacesOut:
    """Every namespace this key may use that holds memories: counts, pending, failed and the
    last write of each (what ``/v1/stats`` tells a ``*`` key, for any key)."""
    stats = await store.stats(scope=caller.export_scope())
    return NamespacesOut(namespaces=[NamespaceStatsOut.of(n) for n in stats.namespaces])


@api.get("/writes", response_model=WritesOut)
async def writes(
    caller: Caller,
    store: StoreDependency,
    namespace: Annotated[list[str] | None, Query()] = None,
    bucket: Bucket = "day",
    buckets: Annotated[int, Query(ge=1, le=MAX_BUCKETS)] = 30,
) -> WritesOut:
    """Memories created and changed per UTC hour or day, the last ``buckets`` up to now: in
    the ``namespace``s named (repeat it), else in every namespace the key may use."""
    scope = _scope(caller, namespace)
    counts = await store.writes(scope, bucket=bucket, buckets=buckets)
    return WritesOut(bucket=bucket, writes=[WriteCountOut.of(count) for count in counts])


def _scope(caller: Access, named: list[str] | None) -> ExportScope:
    """The namespaces named (each checked against the key), else all the key may use."""
    if not named:
        return caller.export_scope()
    scope = ExportScope.of(named)
    caller.require(scope.names)
    return scope


@api.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}}},
)
async def export(
    caller: Caller,
    store: StoreDependency,
    namespace: Annotated[list[str] | None, Query()] = None,
    with_vectors: bool = False,
) -> StreamingResponse:
    """Stream memories as NDJSON, one per line, as ``pgrecall import`` reads them: the
    ``namespace``s named (repeat it), else every namespace the key may use; ``with_vectors``
    adds each vector and its embedding space. Read in pages: the server holds one at a time."""
    scope = _scope(caller, namespace)
    chunks = export_chunks(store.export(scope, with_vectors=with_vectors))
    # The first page is read before the status line goes out, so a database that is down or a
    # stale schema answers as every route does (503 ...), not as a 200 with an empty body.
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    return StreamingResponse(_streamed(first, chunks), media_type=NDJSON)


async def _streamed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The export's chunks. Once the 200 is sent, a failure can only cut the body short (the
    client sees an incomplete chunked answer); the log names the error's class, never the
    database's text carried by its cause."""
    yield first
    try:
        async for chunk in rest:
            yield chunk
    except PgRecallError as exc:
        logger.warning("export cut short: %s", type(exc).__name__)
        raise ExportInterruptedError(type(exc).__name__) from None


class ExportInterruptedError(Exception):
    """An export stream that failed after its status line was sent (for the server's log)."""


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@probes.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(store: StoreDependency) -> Response:
    """Database reachable, migrations at head, embedder reachable."""
    ok, detail = await store.readiness()
    body = Readiness(ready=ok, **detail)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@probes.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, store: StoreDependency) -> PlainTextResponse:
    """Prometheus text format."""
    collected: Metrics = request.app.state.metrics
    collected.pending.set(await store.pending_count())
    return PlainTextResponse(
        generate_latest(collected.registry).decode(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
