"""Diversity (MMR) re-ranking: what it picks, and that a large one never holds the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from pgrecall import MemoryStore
from pgrecall.http.app import create_app

from .conftest import store_settings
from .fakes import HashEmbedder, text_vector
from .http_server import serving

WORDS = ["budget", "travel", "meeting", "garden", "invoice", "printer", "lunch", "deploy"]


@pytest.fixture
async def hashed(migrated_dsn: str) -> AsyncIterator[MemoryStore]:
    """A store whose vectors are fixed random ones (``text_vector``), fast to make."""
    store = await MemoryStore.open(
        store_settings(worker=False), dsn=migrated_dsn, embedder=HashEmbedder()
    )
    yield store
    await store.close()


def _assert_greedy_mmr(candidates: list[tuple[str, float]], picked: list[str], d: float) -> None:
    """Each pick maximises ``(1 - d) * relevance - d * max similarity to earlier picks`` over
    the candidates (texts and scores, best first) not picked yet, ties allowed."""
    scores = [score for _, score in candidates]
    low, spread = min(scores), (max(scores) - min(scores)) or 1.0
    relevance = {text: (score - low) / spread for text, score in candidates}
    vectors = {text: text_vector(text).astype(np.float64) for text, _ in candidates}
    chosen: list[str] = []

    def value(text: str) -> float:
        closest = max((float(vectors[text] @ vectors[c]) for c in chosen), default=0.0)
        return (1 - d) * relevance[text] - d * closest

    for text in picked:
        remaining = [t for t in relevance if t not in chosen]
        assert text in remaining
        assert value(text) >= max(value(t) for t in remaining) - 1e-5
        chosen.append(text)


async def test_mmr_picks_follow_the_formula_after_min_score(hashed: MemoryStore) -> None:
    texts = [f"note {i}: {WORDS[i % 8]} and {WORDS[i * 3 % 8]}" for i in range(300)]
    await hashed.remember(texts, namespace="n")
    query = "budget meeting about the printer"
    # min_score drops rows from all through the fused ranking (the vectors are random, the
    # scores around 0): every remaining hit must still be judged by its own vector.
    plain = await hashed.recall(query, namespace="n", k=100, min_score=0.0)
    diverse = await hashed.recall(query, namespace="n", k=10, min_score=0.0, diversity=0.7)
    assert 10 < len(plain) < 100
    assert len(diverse) == 10
    candidates = [(hit.content, hit.score) for hit in plain]
    _assert_greedy_mmr(candidates, [hit.content for hit in diverse], 0.7)


async def test_healthz_answers_while_large_diverse_recalls_run(hashed: MemoryStore) -> None:
    """Issue 17: k=200 with diversity over 1,000 memories took 33.8 s on the event loop and
    /healthz waited behind it. The issue's bounds are 100 ms and 50 ms; checked here with
    ten times the margin, for a busy test machine."""
    await hashed.remember([f"memory {i} about {WORDS[i % 8]}" for i in range(1000)], namespace="n")
    app = create_app(hashed.settings, store=hashed)
    body = {"query": "travel budget", "namespaces": ["n"], "k": 200, "diversity": 0.5}
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as client:
        recall_seconds: list[float] = []

        async def recalls() -> None:
            for _ in range(5):
                started = time.monotonic()
                response = await client.post("/v1/recall", json=body)
                recall_seconds.append(time.monotonic() - started)
                assert response.status_code == 200, response.text
                assert len(response.json()["hits"]) == 200

        running = asyncio.create_task(recalls())
        probe_seconds: list[float] = []
        while not running.done():
            started = time.monotonic()
            assert (await client.get("/healthz")).status_code == 200
            probe_seconds.append(time.monotonic() - started)
            await asyncio.sleep(0.002)
        await running
    assert probe_seconds
    assert max(recall_seconds) < 1.0, recall_seconds
    assert max(probe_seconds) < 0.5, probe_seconds
