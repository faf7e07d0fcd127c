"""Request and response bodies of the HTTP API (the OpenAPI document is built from these)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pgrecall.api.errors import PayloadTooLarge
from pgrecall.records import (
    AuditEntry,
    Hit,
    Memory,
    MemoryInput,
    Mode,
    RecallOptions,
    RecallResult,
    Remembered,
    SpaceBuild,
    Stats,
    Version,
)
from pgrecall.validation import MAX_KEY_LENGTH, MAX_NAMESPACE_LENGTH, MAX_QUERY_CHARS

Namespace = Field(min_length=1, max_length=MAX_NAMESPACE_LENGTH)
MAX_RECALL_NAMESPACES = 100
Status = Literal["pending", "embedded", "failed"]


class Strict(BaseModel):
    """A request shape: a field it does not know is refused, never ignored."""

    model_config = ConfigDict(extra="forbid")


class _FromRecord(BaseModel):
    """A response body read from one of pgrecall's records (same field names)."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, record: object) -> Self:
        """The body for ``record``."""
        return cls.model_validate(record)

    @classmethod
    def json_of(cls, record: object) -> bytes:
        """The body for ``record``, as JSON."""
        return cls.__pydantic_serializer__.to_json(cls.of(record))


class MemoryFields(Strict):
    """What one memory to store holds besides its namespace (shared by every front end)."""

    content: str = Field(min_length=1)
    metadata: dict[str, Any] | None = None
    key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)
    expires_at: AwareDatetime | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None

    def to_input(self, namespace: str | None) -> MemoryInput:
        """The memory for ``MemoryStore.remember``, in ``namespace``."""
        return MemoryInput(
            content=self.content,
            namespace=namespace,
            metadata=self.metadata,
            key=self.key,
            expires_at=self.expires_at,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
        )


class MemoryIn(MemoryFields):
    """One memory to store."""

    namespace: str = Namespace


def check_batch(count: int, limit: int) -> None:
    """Refuse more memories in one request than the server takes (``http_max_batch``)."""
    if count > limit:
        raise PayloadTooLarge(f"{count} memories in one request; at most {limit}")


class RememberRequest(Strict):
    """Memories to store, in one request."""

    memories: list[MemoryIn] = Field(min_length=1)


class RememberedOut(_FromRecord):
    """What became of one memory: its id, whether it is new, embedded or pending."""

    id: UUID
    namespace: str
    created: bool
    status: Status
    error: str | None


class RememberResponse(BaseModel):
    """One entry per memory sent, in order."""

    memories: list[RememberedOut]

    @classmethod
    def of(cls, results: Sequence[Remembered]) -> RememberResponse:
        return cls(memories=[RememberedOut.of(result) for result in results])


@pydantic_dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class RecallRequest(RecallOptions):
    """A search by meaning inside one or more namespaces: the query, where to look, and the
    recall options (``RecallOptions``, the same fields every front end takes)."""

    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
    namespaces: Annotated[list[str], Field(min_length=1, max_length=MAX_RECALL_NAMESPACES)]


class HitOut(_FromRecord):
    """A recalled memory, score = inner product (cosine) in [-1, 1]."""

    id: UUID
    namespace: str
    content: str
    score: float
    metadata: dict[str, Any]
    key: str | None
    created_at: datetime
    expires_at: datetime | None
    vector_score: float | None
    keyword_score: float | None
    version: int
    valid_from: datetime | None
    valid_until: datetime | None


# HitOut's JSON straight from the Hit (same fields, same order; the same bytes, which
# test_http_rendering checks): building and validating a HitOut first cost more than the
# rendering itself (benchmarks/hit_rendering.py, RESULTS.md).
_HIT_JSON = TypeAdapter(Hit)


def hit_json(hit: Hit) -> bytes:
    """A hit as the JSON of its ``HitOut``."""
    return _HIT_JSON.dump_json(hit)


class RecallResponse(BaseModel):
    """Hits best first; ``pending`` memories in scope are not searchable by meaning yet;
    ``degraded``: the embedder was down and these are keyword matches only."""

    hits: list[HitOut]
    pending: int
    exact: bool
    mode: Mode
    degraded: bool

    @classmethod
    def of(cls, result: RecallResult, *, with_hits: bool = True) -> RecallResponse:
        """The answer to ``result``; without its hits for a front end that streams them."""
        hits = [HitOut.of(hit) for hit in result] if with_hits else []
        return cls(
            hits=hits,
            pending=result.pending,
            exact=result.exact,
            mode=result.mode,
            degraded=result.degraded,
        )


class MemoryOut(_FromRecord):
    """A stored memory."""

    id: UUID
    namespace: str
    content: str
    metadata: dict[str, Any]
    key: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    status: Status
    embed_error: str | None
    version: int
    valid_from: datetime | None
    valid_until: datetime | None
    invalid_reason: str | None


class PageOut(_FromRecord):
    """Memories newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    memories: list[MemoryOut]
    next_cursor: str | None


class MemoryPatch(Strict):
    """Fields to change; ``expires_at: null`` clears the expiry, leaving it out keeps it."""

    content: str | None = Field(default=None, min_length=1)
    metadata: dict[str, Any] | None = None
    expires_at: AwareDatetime | None = None


class InvalidateRequest(Strict):
    """End a fact's validity (now when ``at`` is left out), saying why."""

    at: AwareDatetime | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=1000)


class VersionOut(_FromRecord):
    """One version of a memory and the span it was current (``current_until`` null: now)."""

    version: int
    content: str
    metadata: dict[str, Any]
    key: str | None
    current_from: datetime
    current_until: datetime | None
    superseded_by: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    invalid_reason: str | None


class HistoryOut(BaseModel):
    """Every version of a memory, oldest first."""

    id: UUID
    namespace: str
    versions: list[VersionOut]

    @classmethod
    def of(cls, memory: Memory, versions: Sequence[Version]) -> HistoryOut:
        return cls(
            id=memory.id,
            namespace=memory.namespace,
            versions=[VersionOut.of(version) for version in versions],
        )


class AuditEntryOut(_FromRecord):
    """Who did what to which memory, when; never what it said."""

    namespace: str
    memory_id: UUID
    action: Literal["create", "supersede", "update", "invalidate", "forget"]
    at: datetime
    actor: str
    version: int | None


class AuditOut(BaseModel):
    """Entries newest first; pass the last one's ``at`` as ``before`` for the next page."""

    entries: list[AuditEntryOut]

    @classmethod
    def of(cls, entries: Sequence[AuditEntry]) -> AuditOut:
        return cls(entries=[AuditEntryOut.of(entry) for entry in entries])


class ForgetRequest(Strict):
    """Forget a namespace's memories matching a filter (``{}``: all of them)."""

    namespace: str = Namespace
    filter: dict[str, Any]


class ForgetResponse(BaseModel):
    """How many memories were deleted."""

    forgotten: int


class NamespaceStatsOut(_FromRecord):
    """Counts of one namespace."""

    namespace: str
    memories: int
    embedded: int
    pending: int
    failed: int
    last_write: datetime | None


class NamespacesOut(BaseModel):
    """The namespaces the key may use that hold memories, with their counts and last write."""

    namespaces: list[NamespaceStatsOut]


class WriteCountOut(_FromRecord):
    """Memories written in the bucket starting at ``start``: created, and changed since."""

    start: datetime
    created: int
    updated: int


class WritesOut(BaseModel):
    """Writes per bucket (UTC hour or day), oldest first, every bucket present."""

    bucket: Literal["hour", "day"]
    writes: list[WriteCountOut]


class SpaceBuildOut(BaseModel):
    """An embedding space being built by ``pgrecall reembed``: memories with their vector in it
    (``done``) of those embedded (``total``)."""

    space: str
    done: int
    total: int
    complete: bool

    @classmethod
    def of(cls, build: SpaceBuild) -> SpaceBuildOut:
        return cls(
            space=build.space.describe(),
            done=build.done,
            total=build.total,
            complete=build.complete,
        )


class StatsOut(BaseModel):
    """Counts, the oldest pending age, the store's embedding space, any space being built and
    the one kept for a rollback."""

    memories: int
    embedded: int
    pending: int
    failed: int
    oldest_pending_seconds: float | None
    space: str | None
    building: SpaceBuildOut | None = None
    previous_space: str | None = None
    namespaces: list[NamespaceStatsOut]

    @classmethod
    def of(cls, stats: Stats) -> StatsOut:
        return cls(
            memories=stats.memories,
            embedded=stats.embedded,
            pending=stats.pending,
            failed=stats.failed,
            oldest_pending_seconds=stats.oldest_pending_seconds,
            space=stats.space.describe() if stats.space else None,
            building=SpaceBuildOut.of(stats.building) if stats.building else None,
            previous_space=stats.previous_space.describe() if stats.previous_space else None,
            namespaces=[NamespaceStatsOut.of(n) for n in stats.namespaces],
        )


class ErrorDetail(BaseModel):
    """A machine-readable code and a message that says what to do."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error response has this body."""

    error: ErrorDetail


class Readiness(BaseModel):
    """What /readyz checked; ``ready`` only when all hold."""

    ready: bool
    database: str
    migrations: str
    embedder: str
