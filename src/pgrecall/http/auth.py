"""The caller of an HTTP request: its API key (``Authorization: Bearer`` or ``X-API-Key``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import Request

from pgrecall.api.access import Access, check_key


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries: ``Authorization: Bearer <key>``, else ``X-API-Key`` (the
    REST API and MCP over HTTP read it alike)."""
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return headers.get("x-api-key")


async def access(request: Request) -> Access:
    """FastAPI dependency: the caller's access, from the app's configured keys (async: a
    plain function would run in FastAPI's thread pool)."""
    keys: Mapping[str, Sequence[str]] | None = request.app.state.api_keys
    return check_key(presented_key(request.headers), keys)
