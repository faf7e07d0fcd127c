"""The caller of an HTTP request: its API key (``Authorization: Bearer`` or ``X-API-Key``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import Request

from pgrecall.api.access import Access, check_key


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


def access(request: Request) -> Access:
    """FastAPI dependency: the caller's access, from the app's configured keys."""
    keys: Mapping[str, Sequence[str]] | None = request.app.state.api_keys
    return check_key(_presented_key(request), keys)
