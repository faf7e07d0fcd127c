"""The arguments of the MCP tools: the REST API's request shapes, with the namespace optional.

Each shape reuses the HTTP API's fields (names, limits, types), so a bad argument is refused by
the same schema in both front ends; what differs is that a tool call may leave the namespace out
and get the launch's default one (see ``calls.Scope``).
"""

from __future__ import annotations

from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pgrecall.api.schemas import (
    MAX_RECALL_NAMESPACES,
    InvalidateRequest,
    MemoryFields,
    MemoryPatch,
    Status,
    Strict,
)
from pgrecall.audit import MAX_AUDIT_PAGE
from pgrecall.catalog import MAX_PAGE
from pgrecall.records import RecallOptions
from pgrecall.validation import MAX_KEY_LENGTH, MAX_NAMESPACE_LENGTH, MAX_QUERY_CHARS

# The most ids one forget call may name: as many as one remember call may store by default.
MAX_FORGET_IDS = 1000


def _namespace(description: str) -> Any:
    return Field(min_length=1, max_length=MAX_NAMESPACE_LENGTH, description=description)


DEFAULT_NAMESPACE = "the namespace; left out, the default one of this server"


class MemoryItem(MemoryFields):
    """One memory of a ``remember`` batch, as the REST API takes it; its namespace may be left
    out (the call's, else the default)."""

    namespace: Annotated[
        str | None, _namespace("the namespace; left out, the call's (else the default)")
    ] = None


class RememberArgs(Strict):
    """``content`` (one text) or ``memories`` (several), and what the call gives them all."""

    content: str | None = Field(default=None, min_length=1, description="one text to remember")
    memories: list[MemoryItem] | None = Field(
        default=None, min_length=1, description="several memories, each as the REST API takes it"
    )
    namespace: Annotated[str | None, _namespace(DEFAULT_NAMESPACE)] = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="JSON object stored with the memory, for filters later"
    )
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="a name for one memory (with content): remembering the same key again "
        "replaces it",
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="when the memory is forgotten by itself (ISO 8601, with zone)"
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if (self.content is None) == (self.memories is None):
            raise ValueError("give content (one text) or memories (a list), not both or neither")
        if self.memories is not None and self.key is not None:
            raise ValueError("key names one memory: give it per item of memories")
        return self


@pydantic_dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class RecallArgs(RecallOptions):
    """A recall as the REST API takes it (the query and ``RecallOptions``); ``namespace`` or
    ``namespaces`` may be left out."""

    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
    namespace: Annotated[str | None, _namespace(DEFAULT_NAMESPACE)] = None
    namespaces: Annotated[
        list[str] | None,
        Field(
            min_length=1,
            max_length=MAX_RECALL_NAMESPACES,
            description="several namespaces to search at once, instead of namespace",
        ),
    ] = None

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if self.namespace is not None and self.namespaces is not None:
            raise ValueError("give namespace or namespaces, not both")
        return self


class GetArgs(Strict):
    """One memory by id."""

    id: UUID = Field(description="the memory's id, as remember or recall returned it")


class ListArgs(Strict):
    """A page of a namespace's memories, newest first."""

    namespace: Annotated[str | None, _namespace(DEFAULT_NAMESPACE)] = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE, description="memories per page")
    cursor: str | None = Field(
        default=None, max_length=200, description="next_cursor of the previous page"
    )
    status: Status | None = Field(default=None, description="only memories in this state")


class UpdateArgs(MemoryPatch):
    """A memory's id and the fields to change (``expires_at: null`` clears the expiry)."""

    id: UUID = Field(description="the memory's id")


class ForgetArgs(Strict):
    """Memories to delete: by ``ids``, or a namespace's that match ``filter``."""

    ids: list[UUID] | None = Field(
        default=None, min_length=1, max_length=MAX_FORGET_IDS, description="ids to forget"
    )
    namespace: Annotated[str | None, _namespace(DEFAULT_NAMESPACE + " (with filter)")] = None
    filter: dict[str, Any] | None = Field(
        default=None,
        description="forget the namespace's memories whose metadata matches; {} forgets all",
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give ids, or a filter ({} forgets the whole namespace), not both")
        if self.ids is not None and self.namespace is not None:
            raise ValueError("ids name their memories: leave namespace out")
        return self


class StatsArgs(Strict):
    """Counts of one namespace."""

    namespace: Annotated[str | None, _namespace(DEFAULT_NAMESPACE)] = None


class HistoryArgs(Strict):
    """Every version of one memory."""

    id: UUID = Field(description="the memory's id, as remember, recall or list returned it")


class InvalidateArgs(InvalidateRequest):
    """A memory's id, and when (now, left out) and why its fact stopped being true."""

    id: UUID = Field(description="the memory's id")


class AuditArgs(Strict):
    """A namespace's audit log, newest first."""

    namespace: Annotated[str | None, _namespace(DEFAULT_NAMESPACE)] = None
    memory_id: UUID | None = Field(default=None, description="only this memory's entries")
    before: AwareDatetime | None = Field(
        default=None, description="the last entry's `at` of the previous page"
    )
    limit: int = Field(default=100, ge=1, le=MAX_AUDIT_PAGE, description="entries per page")
