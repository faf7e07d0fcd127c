"""The MCP server: pgrecall's tools on the SDK's low-level ``Server``, over stdio or HTTP.

The low-level server rather than ``MCPServer``: its decorators build input schemas from function
signatures and word argument errors their own way, where these tools take the REST API's request
shapes and must answer with the REST API's codes. Every answer carries its JSON twice, as
structured content (checked by clients against the output schema) and as text for clients that
read only text. An error is a tool error (``isError``) whose body is the REST error body,
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

import pgrecall
from pgrecall.api.access import Access
from pgrecall.api.errors import Problem, RequestError, problem, refusal
from pgrecall.config import Settings
from pgrecall.errors import PgRecallError
from pgrecall.mcp.calls import Scope
from pgrecall.mcp.tools import BY_NAME, TOOLS
from pgrecall.store import MemoryStore

logger = logging.getLogger(__name__)

Request = ServerRequestContext[MemoryStore]
ScopeOf = Callable[[Request], Scope]
Lifespan = Callable[[Server[MemoryStore]], AbstractAsyncContextManager[MemoryStore]]

INSTRUCTIONS = (
    "pgrecall is long-term memory that outlives this conversation. At the start of a task, "
    "recall what is known about it. When you learn something that will matter in a later "
    "session (a decision and its reason, a preference, a convention, a fix), remember it as "
    "one self-contained statement, and do so before the conversation is compacted or ends."
)


def _text(payload: dict[str, Any]) -> list[types.TextContent]:
    return [types.TextContent(type="text", text=json.dumps(payload, ensure_ascii=False))]


def answer(result: BaseModel) -> types.CallToolResult:
    """A tool's answer, as structured content and as the same JSON in text."""
    payload = result.model_dump(mode="json")
    return types.CallToolResult(content=_text(payload), structured_content=payload)


def tool_error(described: Problem) -> types.CallToolResult:
    """A tool error carrying the REST API's error body."""
    payload: dict[str, Any] = described.body()
    return types.CallToolResult(content=_text(payload), structured_content=payload, is_error=True)


def build_server(scope_of: ScopeOf, lifespan: Lifespan) -> Server[MemoryStore]:
    """The server; ``lifespan`` yields the store, ``scope_of`` tells a request's caller scope."""

    async def list_tools(
        ctx: Request, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.listed() for tool in TOOLS])

    async def call_tool(ctx: Request, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = BY_NAME.get(params.name)
        if tool is None:
            names = ", ".join(BY_NAME)
            raise MCPError(types.INVALID_PARAMS, f"no tool {params.name!r}; the tools: {names}")
        try:
            arguments = tool.arguments.validate_python(params.arguments or {})
        except ValidationError as exc:
            return tool_error(refusal(exc.errors()))
        try:
            return answer(await tool.call(ctx.lifespan_context, scope_of(ctx), arguments))
        except (PgRecallError, RequestError) as exc:
            return tool_error(problem(exc))

    return Server(
        "pgrecall",
        version=pgrecall.__version__,
        title="pgrecall",
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def launch_scope(namespaces: list[str], settings: Settings) -> Scope:
    """The scope of ``pgrecall mcp``: the namespaces it was launched with (exact names or
    ``prefix*``, as an API key's); the first exact one is the default."""
    return Scope(access=Access(patterns=tuple(namespaces)), max_batch=settings.http_max_batch)


async def serve_stdio(settings: Settings, namespaces: list[str]) -> None:
    """Serve MCP on stdin/stdout until the client closes them. The store opens once the SDK
    holds stdout, so nothing printed while it opens can reach the protocol stream."""
    scope = launch_scope(namespaces, settings)

    @asynccontextmanager
    async def opened(_: Server[MemoryStore]) -> AsyncIterator[MemoryStore]:
        async with await MemoryStore.open(settings) as store:
            yield store

    server = build_server(lambda _: scope, opened)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
