"""Prometheus metrics: requests and latencies, embed latency and errors, pending queue depth."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgrecall.embedding.base import Embedder, Embeddings
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import EmbeddingError


class Metrics:
    """One registry per app, so tests and several apps in a process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pgrecall_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pgrecall_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.embed_latency = Histogram(
            "pgrecall_embed_seconds",
            "Embedder call latency",
            ["kind"],
            registry=self.registry,
        )
        self.embed_errors = Counter(
            "pgrecall_embed_errors_total",
            "Embedder failures by error type",
            ["error"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "pgrecall_pending_memories",
            "Memories waiting for their vector",
            registry=self.registry,
        )


class RequestMetrics:
    """ASGI middleware counting requests and timing them per route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)


class InstrumentedEmbedder:
    """An Embedder that times every call and counts failures."""

    def __init__(self, inner: Embedder, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    @property
    def space(self) -> EmbeddingSpace:
        """The wrapped embedder's space."""
        return self._inner.space

    async def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts to store, timed."""
        return await self._timed("documents", self._inner.embed_documents, texts)

    async def embed_queries(self, texts: Sequence[str]) -> Embeddings:
        """Embed queries, timed."""
        return await self._timed("queries", self._inner.embed_queries, texts)

    async def aclose(self) -> None:
        """Close the wrapped embedder."""
        await self._inner.aclose()

    async def ping(self) -> str:
        """The wrapped embedder's health check."""
        return await self._inner.ping()

    async def _timed(
        self,
        kind: str,
        call: Callable[[Sequence[str]], Awaitable[Embeddings]],
        texts: Sequence[str],
    ) -> Embeddings:
        started = time.perf_counter()
        try:
            result = await call(texts)
        except EmbeddingError as exc:
            self._metrics.embed_errors.labels(type(exc).__name__).inc()
            raise
        finally:
            self._metrics.embed_latency.labels(kind).observe(time.perf_counter() - started)
        return result
