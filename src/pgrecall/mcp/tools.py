"""The MCP tools pgrecall offers: name, description for a model, shapes, hints, implementation.

Input schemas are the argument shapes (``arguments``), output schemas the REST API's answers;
the hints tell a client which calls change nothing (``readOnlyHint``), which delete
(``destructiveHint``) and which may be repeated safely (``idempotentHint``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp_types import Tool, ToolAnnotations
from pydantic import BaseModel, TypeAdapter

from pgrecall.api import schemas as answers
from pgrecall.mcp import arguments, calls
from pgrecall.mcp.calls import Scope
from pgrecall.store import MemoryStore

Call = Callable[[MemoryStore, Scope, Any], Awaitable[BaseModel]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: what a client lists, and the call that serves it."""

    name: str
    title: str
    description: str
    arguments: TypeAdapter[Any]
    answer: type[BaseModel]
    hints: ToolAnnotations
    call: Call

    def listed(self) -> Tool:
        """The tool as ``tools/list`` shows it."""
        return Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=self.arguments.json_schema(),
            output_schema=self.answer.model_json_schema(mode="serialization"),
            annotations=self.hints.model_copy(update={"title": self.title}),
        )


def _hints(*, read_only: bool, destructive: bool, idempotent: bool) -> ToolAnnotations:
    # open_world False: the tools touch this store only, nothing outside it.
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


READ = _hints(read_only=True, destructive=False, idempotent=True)

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="remember",
        title="Remember",
        description=(
            "Store something worth knowing later in long-term memory. Remember facts that will "
            "still matter in a future session: decisions and their reasons, the user's "
            "preferences, conventions of this project, what was tried and failed, how a problem "
            "was solved. Write each memory as one self-contained statement that makes sense "
            "without this conversation (name the thing, not 'it'); keep unrelated facts in "
            "separate memories. Do not store secrets, passwords or keys, nor what is trivially "
            "found again (file contents, command output). Pass `content` for one text or "
            "`memories` for several; `metadata` (a JSON object) can be filtered on later; "
            "`key` names a memory so that remembering the same key again replaces it; "
            "`expires_at` forgets it at that time. The same text twice is stored once."
        ),
        arguments=TypeAdapter(arguments.RememberArgs),
        answer=answers.RememberResponse,
        # Not idempotent: remembering a key again replaces what it held.
        hints=_hints(read_only=False, destructive=False, idempotent=False),
        call=calls.remember,
    ),
    ToolSpec(
        name="recall",
        title="Recall",
        description=(
            "Search long-term memory by meaning. Call it at the start of a task to learn what is "
            "already known (preferences, decisions, earlier problems), and before asking the "
            "user something they may have told you already. Phrase `query` as the question you "
            "want answered or as a description of the fact you are looking for ('which test "
            "database does this project use'), not as a bare keyword list; different words "
            "than the stored text still match. Hits come back best first with a score; `k` "
            "sets how many. `filter` matches metadata, `created_after`/`created_before` bound "
            "the time; `mode` is hybrid (default: meaning and words), vector or keyword."
        ),
        arguments=TypeAdapter(arguments.RecallArgs),
        answer=answers.RecallResponse,
        hints=READ,
        call=calls.recall,
    ),
    ToolSpec(
        name="get",
        title="Get a memory",
        description="One memory by its id (from remember, recall or list), with its metadata.",
        arguments=TypeAdapter(arguments.GetArgs),
        answer=answers.MemoryOut,
        hints=READ,
        call=calls.get,
    ),
    ToolSpec(
        name="list",
        title="List memories",
        description=(
            "A page of a namespace's memories, newest first, to review what is stored. Pass "
            "the answer's `next_cursor` as `cursor` for the next page; `status` shows only "
            "pending (not yet searchable by meaning) or failed memories. To find a memory by "
            "what it says, use recall instead."
        ),
        arguments=TypeAdapter(arguments.ListArgs),
        answer=answers.PageOut,
        hints=READ,
        call=calls.list_page,
    ),
    ToolSpec(
        name="update",
        title="Update a memory",
        description=(
            "Correct a memory that has become wrong or incomplete instead of storing a "
            "contradicting one: new `content` (searched by its new meaning), new `metadata` "
            "(replaces the old), or `expires_at` (null clears it). Fields left out stay."
        ),
        arguments=TypeAdapter(arguments.UpdateArgs),
        answer=answers.MemoryOut,
        hints=_hints(read_only=False, destructive=True, idempotent=True),
        call=calls.update,
    ),
    ToolSpec(
        name="forget",
        title="Forget memories",
        description=(
            "Delete memories for good: by `ids`, or every memory of a namespace whose metadata "
            "matches `filter` ({} deletes the whole namespace). Use it when the user asks to "
            "forget something or a memory is plainly wrong and not worth correcting. Cannot be "
            "undone; answers how many were deleted."
        ),
        arguments=TypeAdapter(arguments.ForgetArgs),
        answer=answers.ForgetResponse,
        hints=_hints(read_only=False, destructive=True, idempotent=True),
        call=calls.forget,
    ),
    ToolSpec(
        name="history",
        title="History of a memory",
        description=(
            "Every version of one memory, oldest first, each with its text, metadata and the "
            "time span it was the current one. Use it to learn what was believed before a fact "
            "changed, and when it changed; recall and get show the current version only."
        ),
        arguments=TypeAdapter(arguments.HistoryArgs),
        answer=answers.HistoryOut,
        hints=READ,
        call=calls.history,
    ),
    ToolSpec(
        name="invalidate",
        title="Invalidate a fact",
        description=(
            "Mark a memory's fact as no longer true from `at` (now, left out), with a `reason`, "
            "without deleting it: recall leaves it out from then on unless `include_invalid` is "
            "set, and its history keeps it. Prefer this to forget when a fact was true once "
            "and stopped being so (someone moved, a decision was reversed). A fact already "
            "invalid keeps its first end: the call is then a conflict error saying since when."
        ),
        arguments=TypeAdapter(arguments.InvalidateArgs),
        answer=answers.MemoryOut,
        hints=_hints(read_only=False, destructive=False, idempotent=False),
        call=calls.invalidate,
    ),
    ToolSpec(
        name="audit",
        title="Audit log",
        description=(
            "Who created, superseded, updated, invalidated or forgot which memory of a "
            "namespace, and when, newest first (never what the memories said). Pass the last "
            "entry's `at` as `before` for the next page."
        ),
        arguments=TypeAdapter(arguments.AuditArgs),
        answer=answers.AuditOut,
        hints=READ,
        call=calls.audit,
    ),
    ToolSpec(
        name="stats",
        title="Memory statistics",
        description=(
            "How many memories a namespace holds, how many are still waiting to be embedded or "
            "failed, and which embedding model the store uses."
        ),
        arguments=TypeAdapter(arguments.StatsArgs),
        answer=answers.StatsOut,
        hints=READ,
        call=calls.stats,
    ),
)

BY_NAME = {tool.name: tool for tool in TOOLS}
