"""The values that cross pgrecall's API: what to remember, what comes back."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypedDict, overload
from uuid import UUID

from pydantic import AwareDatetime, Field, Strict

from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.validation import MAX_K, MAX_NEIGHBOURS

EmbedStatus = Literal["embedded", "pending", "failed"]
Mode = Literal["hybrid", "vector", "keyword"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "keyword")


class Unset:
    """The type of ``UNSET``: an argument left out, where None would mean "clear it" (as
    ``expires_at`` of ``MemoryStore.update``)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


@dataclass(frozen=True, slots=True)
class Embedding:
    """A vector and the space that made it. ``remember`` stores it as given when ``space`` is
    the store's (an export imported into the same space embeds nothing) and embeds the text
    afresh otherwise: vectors of two spaces are never mixed."""

    space: EmbeddingSpace
    vector: Sequence[float]


@dataclass(frozen=True, slots=True)
class MemoryInput:
    """One memory to store; fields left None take the ``remember`` call's values.

    ``created_at`` backdates a new memory (an import keeps the exported time); a memory already
    stored keeps its own. ``embedding`` is a vector made earlier, see ``Embedding``.
    ``valid_from`` / ``valid_until``: when the fact is true in the world (valid time), as the
    agent says; unrelated to when it was stored.
    """

    content: str
    namespace: str | None = None
    metadata: Mapping[str, Any] | None = None
    key: str | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None
    embedding: Embedding | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Remembered:
    """The outcome for one remembered text: its id, and whether a new row was made."""

    id: UUID
    namespace: str
    created: bool
    status: EmbedStatus = "embedded"
    error: str | None = None

    @property
    def pending(self) -> bool:
        """True when the memory is stored but waits for its vector."""
        return self.status == "pending"


@dataclass(frozen=True, slots=True)
class Memory:
    """A stored memory."""

    id: UUID
    namespace: str
    content: str
    metadata: dict[str, Any]
    key: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    status: EmbedStatus
    embed_error: str | None = None
    embed_attempts: int = 0
    version: int = 1
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    invalid_reason: str | None = None

    @property
    def embedded(self) -> bool:
        """True once the memory has its vector and can be recalled."""
        return self.status == "embedded"


@dataclass(frozen=True, slots=True)
class Hit:
    """A recalled memory and its score (inner product of unit vectors, higher is closer)."""

    id: UUID
    namespace: str
    content: str
    score: float
    metadata: dict[str, Any]
    key: str | None
    created_at: datetime
    expires_at: datetime | None
    vector_score: float | None = None  # inner product with the query, when embedded
    keyword_score: float | None = None  # BM25, when the memory was among the keyword hits
    version: int = 1
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a memory, and the span of time it was the current one: from
    ``current_from`` until ``current_until`` (None for the version current now), when version
    ``superseded_by`` replaced it."""

    memory_id: UUID
    namespace: str
    version: int
    content: str
    metadata: dict[str, Any]
    key: str | None
    current_from: datetime
    current_until: datetime | None
    superseded_by: int | None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    invalid_reason: str | None = None

    @property
    def current(self) -> bool:
        """True for the version recall, get and list show."""
        return self.current_until is None


AuditAction = Literal["create", "supersede", "update", "invalidate", "forget"]
AUDIT_ACTIONS: tuple[AuditAction, ...] = ("create", "supersede", "update", "invalidate", "forget")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """That something happened to a memory, by whom and when; never what the memory said."""

    namespace: str
    memory_id: UUID
    action: AuditAction
    at: datetime
    actor: str
    version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecallOptions:
    """How to recall; the defaults are what ``MemoryStore.recall`` does without arguments.

    The one definition of the recall options: every front end builds this type (the HTTP
    request and the MCP tool extend it with the query and namespaces), and the constraints
    below are what their schemas publish. The store checks them again for Python callers.
    """

    # Counts are strict: JSON's true or "3" is a client's mistake, refused as the store refuses
    # it from Python (validation.py), not read as 1 or 3.
    k: Annotated[
        int, Strict(), Field(ge=1, le=MAX_K, description="how many memories, best first")
    ] = 10
    filter: Annotated[
        Mapping[str, Any] | None,
        Field(description='metadata filter, e.g. {"topic": "travel"} or {"year": {"$gte": 2024}}'),
    ] = None
    min_score: Annotated[
        float | None, Field(ge=-1, le=1, description="drop hits less similar than this (cosine)")
    ] = None
    created_after: Annotated[
        AwareDatetime | None, Field(description="only memories created at or after this time")
    ] = None
    created_before: Annotated[
        AwareDatetime | None, Field(description="only memories created before this time")
    ] = None
    exact: Annotated[bool, Field(description="exact vector scan whatever the size")] = False
    mode: Annotated[
        Mode,
        Field(description="hybrid (meaning and keywords, the default), vector or keyword"),
    ] = "hybrid"
    vector_weight: Annotated[
        float | None, Field(ge=0, le=100, description="weight of the vector ranking in hybrid")
    ] = None
    keyword_weight: Annotated[
        float | None, Field(ge=0, le=100, description="weight of the keyword ranking in hybrid")
    ] = None
    diversity: Annotated[
        float, Field(ge=0, le=1, description="0 to 1: trade relevance for variety (MMR)")
    ] = 0.0
    recency_half_life: Annotated[
        float | None, Field(gt=0, description="seconds after which a memory counts half")
    ] = None
    importance: Annotated[
        str | None,
        Field(min_length=1, max_length=256, description="metadata key holding a 0..1 boost"),
    ] = None
    as_of: Annotated[
        AwareDatetime | None,
        Field(description="answer from the versions that were current at this time"),
    ] = None
    valid_at: Annotated[
        AwareDatetime | None,
        Field(description="only facts valid at this time (their valid_from / valid_until)"),
    ] = None
    include_invalid: Annotated[
        bool, Field(description="keep facts whose validity has ended (invalidated)")
    ] = False
    neighbours: Annotated[
        int | None,
        Strict(),
        Field(
            ge=0,
            le=MAX_NEIGHBOURS,
            description="with each hit, this many memories before and after it in its thread "
            "(default: the store's PGRECALL_RECALL_NEIGHBOURS)",
        ),
    ] = None


class RecallKeywords(TypedDict, total=False):
    """``RecallOptions`` as keyword arguments of ``MemoryStore.recall`` (for type checkers;
    a test keeps the two the same)."""

    k: int
    filter: Mapping[str, Any] | None
    min_score: float | None
    created_after: datetime | None
    created_before: datetime | None
    exact: bool
    mode: Mode
    vector_weight: float | None
    keyword_weight: float | None
    diversity: float
    recency_half_life: float | None
    importance: str | None
    as_of: datetime | None
    valid_at: datetime | None
    include_invalid: bool
    neighbours: int | None


@dataclass(frozen=True, slots=True)
class RecallResult(Sequence[Hit]):
    """Hits, best first; behaves as a sequence of them.

    ``score`` is the fused score in hybrid mode, the inner product in vector mode and BM25 in
    keyword mode. ``pending`` memories in scope have no vector yet: the answer may be incomplete.
    ``degraded`` means hybrid fell back to keywords because the embedder was unavailable.
    """

    hits: tuple[Hit, ...]
    exact: bool = True
    pending: int = 0
    mode: Mode = "hybrid"
    degraded: bool = False

    @overload
    def __getitem__(self, index: int) -> Hit: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Hit]: ...
    def __getitem__(self, index: int | slice) -> Hit | Sequence[Hit]:
        return self.hits[index]

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``list``, newest first; pass ``next_cursor`` to get the next."""

    memories: list[Memory]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    """Counts for one namespace."""

    namespace: str
    memories: int
    embedded: int
    pending: int = 0
    failed: int = 0
    last_write: datetime | None = None  # the latest created_at or updated_at of its memories


@dataclass(frozen=True, slots=True)
class WriteCount:
    """Memories written in one bucket of time that starts at ``start``: ``created`` then, and
    ``updated`` (changed after creation, counted at their last change)."""

    start: datetime
    created: int
    updated: int


@dataclass(frozen=True, slots=True)
class SpaceBuild:
    """An embedding space being built by ``pgrecall reembed``: memories with their vector in
    it (``done``) of those embedded (``total``)."""

    space: EmbeddingSpace
    done: int
    total: int

    @property
    def complete(self) -> bool:
        """Every embedded memory has its vector in the new space: it can be switched to."""
        return self.done >= self.total


@dataclass(frozen=True, slots=True)
class Stats:
    """What the store holds; its active space, any space being built, and the one kept for a
    rollback (``previous_space``)."""

    memories: int
    embedded: int
    pending: int = 0
    failed: int = 0
    oldest_pending_seconds: float | None = None
    namespaces: list[NamespaceStats] = field(default_factory=list)
    space: EmbeddingSpace | None = None
    building: SpaceBuild | None = None
    previous_space: EmbeddingSpace | None = None
