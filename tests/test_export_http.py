"""GET /v1/export: NDJSON streamed through a real server, scoped by the caller's key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import httpx
import pytest

from pgrecall import MemoryStore
from pgrecall.embedding.base import Embeddings
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.transfer.importer import import_lines

from .conftest import ADMIN_KEY, AGENT_KEY, limited_settings, store_settings
from .http_server import ServerThread

NAMESPACES = ("agent-a", "team-blue", "team-red", "other")


@pytest.fixture
def server(migrated_dsn: str) -> Iterator[ServerThread]:
    running = ServerThread(limited_settings(migrated_dsn)).start()
    memories = [
        {"namespace": name, "content": f"{name} memory {i}", "metadata": {"i": i}}
        for name in NAMESPACES
        for i in range(3)
    ]
    memories[0]["key"] = "first"
    memories[0]["expires_at"] = "2031-01-01T00:00:00+00:00"
    stored = httpx.post(
        f"{running.url}/v1/memories",
        json={"memories": memories},
        headers={"X-API-Key": ADMIN_KEY},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    yield running
    running.stop()


def _export(server: ServerThread, key: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.url}/v1/export", params=params, headers=headers, timeout=60)


def _lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def _namespaces(response: httpx.Response) -> set[str]:
    return {line["namespace"] for line in _lines(response)}


def test_a_key_exports_the_namespaces_it_may_use_and_no_other(server: ServerThread) -> None:
    assert _namespaces(_export(server, AGENT_KEY)) == {"agent-a", "team-blue", "team-red"}
    assert _namespaces(_export(server, ADMIN_KEY)) == set(NAMESPACES)
    named = _export(server, AGENT_KEY, namespace=["agent-a", "team-red"])
    assert _namespaces(named) == {"agent-a", "team-red"}
    assert len(_lines(named)) == 6

    refused = _export(server, AGENT_KEY, namespace=["agent-a", "other"])
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert "other" in refused.json()["error"]["message"]
    assert _export(server, None).status_code == 401
    invalid = _export(server, ADMIN_KEY, namespace=[""])
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "invalid_input"


class CountingEmbedder:
    """The local model, counting the texts it is asked to embed."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.documents = 0

    @property
    def space(self) -> EmbeddingSpace:
        return self.inner.space

    async def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        self.documents += len(texts)
        return await self.inner.embed_documents(texts)

    async def embed_queries(self, texts: Sequence[str]) -> Embeddings:
        return await self.inner.embed_queries(texts)

    async def aclose(self) -> None:
        """The session's model stays loaded."""

    async def ping(self) -> str:
        return await self.inner.ping()


async def test_an_http_export_with_vectors_imports_without_embedding(
    server: ServerThread, empty_dsn: str, local_embedder: LocalEmbedder
) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.get(
            f"{server.url}/v1/export",
            params={"namespace": "agent-a", "with_vectors": "true"},
            headers={"X-API-Key": AGENT_KEY},
        )
    lines = _lines(response)
    assert len(lines) == 3
    assert all(line["space"]["model"] == local_embedder.space.model for line in lines)
    first = next(line for line in lines if line["key"] == "first")
    assert first["expires_at"] == "2031-01-01T00:00:00+00:00"
    assert first["metadata"] == {"i": 0}

    embedder = CountingEmbedder(local_embedder)
    settings = store_settings(auto_migrate=True, worker=False)
    async with await MemoryStore.open(settings, dsn=empty_dsn, embedder=embedder) as target:
        report = await import_lines(target, response.text.splitlines(), namespace=None)
        page = await target.list("agent-a", limit=10)
    assert (report.created, report.embedded_afresh, embedder.documents) == (3, 0, 0)
    exported = {(line["content"], line["created_at"]) for line in lines}
    assert {(m.content, m.created_at.isoformat()) for m in page.memories} == exported
    assert all(memory.embedded for memory in page.memories)


def test_an_export_that_cannot_start_answers_an_error_not_a_200(
    server: ServerThread, migrated_dsn: str
) -> None:
    # The first page is read before the status line: a broken schema is the usual error body,
    # where a lazy stream answered 200 with an empty body and logged the database's text.
    async def rename(old: str, new: str) -> None:
        connection = await asyncpg.connect(migrated_dsn)
        try:
            await connection.execute(f"ALTER TABLE {old} RENAME TO {new}")
        finally:
            await connection.close()

    asyncio.run(rename("memories", "memories_away"))
    try:
        response = _export(server, ADMIN_KEY, namespace="agent-a")
    finally:
        asyncio.run(rename("memories_away", "memories"))
    assert response.status_code >= 400
    assert set(response.json()) == {"error"}
    assert "memories" not in response.text
    assert _namespaces(_export(server, ADMIN_KEY, namespace="agent-a")) == {"agent-a"}
