"""MCP streamable HTTP at ``/mcp`` in the app of ``pgrecall serve``, behind the REST API's keys.

A request without a valid key is refused before the SDK sees it (401, the REST body); every tool
call then takes its scope from the key of the request that carries it, so a key bound to ``a``
reaches ``a`` only, whichever session it talks through. The SDK's session manager runs
stateless with JSON answers: each POST stands alone (no session state to hold, exhaust or
hijack, and any replica can answer), which these tools need since none streams or calls back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request as HttpRequest
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from pgrecall.api.access import Access, check_key
from pgrecall.api.errors import RequestError, Unauthorized
from pgrecall.config import Settings
from pgrecall.http.auth import presented_key
from pgrecall.http.errors import error_response
from pgrecall.mcp import calls
from pgrecall.mcp.server import Request, build_server
from pgrecall.store import MemoryStore

PATH = "/mcp"
# Without keys `pgrecall serve` binds to loopback only; the SDK's DNS-rebinding check then keeps a
# web page from reaching it under another host name.
LOOPBACK_ONLY = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
    allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
)


class McpEndpoint:
    """The ASGI app at ``/mcp``: the key checked, then the SDK's session manager."""

    def __init__(
        self, manager: StreamableHTTPSessionManager, keys: Mapping[str, Sequence[str]] | None
    ) -> None:
        self.manager = manager
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check_key(presented_key(Headers(scope=scope)), self.keys)
        except RequestError as exc:
            await error_response(exc.status, exc.code, str(exc))(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)


def _caller_scope(settings: Settings) -> calls.Scope | None:
    """The scope of every caller when no keys are configured (loopback): everything."""
    if settings.api_keys is not None:
        return None
    return calls.Scope(access=Access(patterns=None), max_batch=settings.http_max_batch)


def mount(
    routes: list[BaseRoute], settings: Settings, store_of: Callable[[], MemoryStore]
) -> AbstractAsyncContextManager[None]:
    """Add ``/mcp`` to ``routes``; returns what runs it, to enter once the store is open."""
    unbounded = _caller_scope(settings)

    def scope_of(ctx: Request) -> calls.Scope:
        if unbounded is not None:
            return unbounded
        request = ctx.request
        if not isinstance(request, HttpRequest):
            raise Unauthorized("send an API key: Authorization: Bearer <key> (or X-API-Key)")
        access = check_key(presented_key(request.headers), settings.api_keys)
        return calls.Scope(access=access, max_batch=settings.http_max_batch)

    @asynccontextmanager
    async def lifespan(_: Server[MemoryStore]) -> AsyncIterator[MemoryStore]:
        yield store_of()

    manager = StreamableHTTPSessionManager(
        app=build_server(scope_of, lifespan),
        json_response=True,
        stateless=True,
        security_settings=LOOPBACK_ONLY if settings.api_keys is None else None,
        max_request_body_size=settings.http_max_body_bytes,
    )
    routes.append(Route(PATH, endpoint=McpEndpoint(manager, settings.api_keys)))
    return manager.run()
