"""The ASGI app: FastAPI over one MemoryStore, with auth, limits, errors and metrics."""

from __future__ import annotations

import gc
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgrecall.config import Settings
from pgrecall.embedding.registry import create_embedder
from pgrecall.http import console, errors
from pgrecall.http.errors import error_response
from pgrecall.http.metrics import InstrumentedEmbedder, Metrics, RequestMetrics
from pgrecall.http.routes import api, probes
from pgrecall.mcp import missing_sdk
from pgrecall.store import MemoryStore

logger = logging.getLogger(__name__)


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, by header or by what arrives.

    The body is read here, up to the limit, before the app sees it: a chunked upload has no
    length to check up front, and an error raised while the app reads its body became the
    app's 400 (malformed body) instead of a 413.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", f"request body over {self.limit} bytes")
        await response(scope, receive, send)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mount_mcp(app: FastAPI, settings: Settings) -> AbstractAsyncContextManager[None] | None:
    """Serve MCP at /mcp when the ``mcp`` extra is installed; say so once when it is not."""
    missing = missing_sdk()
    if missing is not None:
        logger.info("no MCP endpoint at /mcp: %s", missing)
        return None
    from pgrecall.mcp.endpoint import mount

    return mount(app.router.routes, settings, lambda: app.state.store)


def create_app(
    settings: Settings, *, store: MemoryStore | None = None, freeze_startup: bool = False
) -> FastAPI:
    """The app; it opens (and closes) its own store unless one is given. ``freeze_startup``
    (for a server process, not for an app among others in a process such as the tests'):
    what startup built is moved out of the garbage collector's sight once the app is up."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as resources:
            if store is not None:
                app.state.store = store
            else:
                embedder = InstrumentedEmbedder(create_embedder(settings), metrics)
                resources.push_async_callback(embedder.aclose)
                opened = await MemoryStore.open(settings, embedder=embedder)
                resources.push_async_callback(opened.close)
                app.state.store = opened
            # The MCP endpoint's session manager runs inside the app's lifespan, once the store
            # it serves is open, and stops before the store closes.
            if mcp_runner is not None:
                await resources.enter_async_context(mcp_runner)
            if freeze_startup:
                # What startup built (modules, FastAPI's routes, pydantic's validators, the
                # store) lives as long as the server: frozen, the collector's full passes no
                # longer walk it (issue 22: the p99 of benchmarks/http_load.py, RESULTS.md).
                gc.collect()
                gc.freeze()
            yield

    app = FastAPI(
        title="pgrecall",
        version="1",
        summary="Semantic memory for AI agents on PostgreSQL + pgvector",
        lifespan=lifespan,
    )
    app.state.api_keys = settings.api_keys
    app.state.max_batch = settings.http_max_batch
    app.state.metrics = metrics
    errors.install(app)
    app.include_router(api)
    app.include_router(probes)
    console.install(app)
    mcp_runner = _mount_mcp(app, settings)
    app.add_middleware(BodyLimit, limit=settings.http_max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
