"""The Ollama embedder against the stand-in: every error row, every fault, retries, batching."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pgrecall.config import Settings, load_settings
from pgrecall.embedding.ollama.client import OllamaClient, RetryPolicy
from pgrecall.embedding.ollama.embedder import OllamaEmbedder, estimated_tokens, keep_alive_value
from pgrecall.embedding.space import configured_space
from pgrecall.errors import (
    BadEmbeddingResponseError,
    DimensionMismatchError,
    EmbedderBusyError,
    EmbedderUnavailableError,
    InputTooLongError,
    InvalidInputError,
    ModelNotFoundError,
    NotAnEmbeddingModelError,
)

from .conftest import UNRESOLVABLE_URL
from .ollama_standin import Fault, OllamaStandin, StandinModel

FAST_RETRY = RetryPolicy(max_attempts=4, budget_seconds=10, base_delay=0.01, max_delay=0.05)


def _settings(url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"ollama_url": url, "embed_model": "nomic-embed-text"}
    return load_settings(**{**base, **overrides})


@pytest.fixture
async def make_embedder(ollama: OllamaStandin) -> AsyncIterator[Any]:
    created: list[OllamaEmbedder] = []

    def make(
        retry: RetryPolicy = FAST_RETRY, timeout: float = 10.0, **overrides: Any
    ) -> OllamaEmbedder:
        settings = _settings(overrides.pop("url", ollama.url), **overrides)
        client = OllamaClient(settings.ollama_url, timeout=timeout, retry=retry)
        embedder = OllamaEmbedder(settings, configured_space(settings), client)
        created.append(embedder)
        return embedder

    yield make
    for embedder in created:
        await embedder.aclose()


def _embed_calls(ollama: OllamaStandin) -> list[dict[str, Any]]:
    return list(ollama.embed_requests())


async def test_order_is_kept_across_batches_and_concurrency(
    make_embedder: Any, ollama: OllamaStandin
) -> None:
    texts = [f"memory number {i} about topic {i % 7}" for i in range(23)]
    batched = make_embedder(embed_batch_size=4, embed_concurrency=3)
    one_call = make_embedder(embed_batch_size=100)
    result = await batched.embed_documents(texts)
    reference = await one_call.embed_documents(texts)
    assert result.vectors == reference.vectors
    sizes = [len(call["input"]) for call in _embed_calls(ollama)]
    assert sorted(sizes[:-1]) == [3, 4, 4, 4, 4, 4]
    assert sizes[-1] == 23


async def test_batches_are_bounded_by_characters(make_embedder: Any, ollama: OllamaStandin) -> None:
    embedder = make_embedder(embed_batch_size=100, embed_batch_chars=100)
    await embedder.embed_documents(["x" * 40] * 5)
    prefixed = len("search_document: ") + 40
    for call in _embed_calls(ollama):
        assert sum(len(t) for t in call["input"]) <= max(100, prefixed)


async def test_prefixes_of_the_model_are_applied(make_embedder: Any, ollama: OllamaStandin) -> None:
    embedder = make_embedder()
    await embedder.embed_documents(["the sky is blue"])
    await embedder.embed_queries(["why is the sky blue?"])
    documents, queries = _embed_calls(ollama)
    assert documents["input"] == ["search_document: the sky is blue"]
    assert queries["input"] == ["search_query: why is the sky blue?"]
    assert documents["truncate"] is True
    assert "dimensions" not in documents


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
async def test_empty_texts_are_refused_before_any_request(
    make_embedder: Any, ollama: OllamaStandin, bad: str
) -> None:
    embedder = make_embedder()
    with pytest.raises(InvalidInputError, match="position 1") as caught:
        await embedder.embed_documents(["fine", bad, "also fine"])
    assert caught.value.position == 1
    assert _embed_calls(ollama) == []


async def test_model_not_pulled(make_embedder: Any) -> None:
    embedder = make_embedder(embed_model="bge-m3")
    with pytest.raises(ModelNotFoundError, match="run: ollama pull bge-m3"):
        await embedder.embed_documents(["x"])


async def test_not_an_embedding_model(make_embedder: Any, ollama: OllamaStandin) -> None:
    embedder = make_embedder(embed_model="llama3.2", embed_dimensions=1024)
    with pytest.raises(NotAnEmbeddingModelError, match="cannot embed"):
        await embedder.embed_documents(["x"])
    assert _embed_calls(ollama) == []  # refused from /api/show, before loading it


async def test_501_from_embed_is_not_an_embedding_model(ollama: OllamaStandin) -> None:
    client = OllamaClient(ollama.url, retry=FAST_RETRY)
    try:
        with pytest.raises(NotAnEmbeddingModelError):
            await client.embed("llama3.2", {"input": ["x"]})
    finally:
        await client.aclose()
    assert len(_embed_calls(ollama)) == 1


async def test_model_size_is_checked_against_the_store(
    make_embedder: Any, ollama: OllamaStandin
) -> None:
    ollama.state.models["custom-embed:latest"] = StandinModel(
        "custom-embed:latest", "bert", 512, 512, None
    )
    embedder = make_embedder(embed_model="custom-embed", embed_dimensions=768)
    with pytest.raises(DimensionMismatchError, match="512-dimensional"):
        await embedder.embed_documents(["x"])
    fits = make_embedder(embed_model="custom-embed", embed_dimensions=512)
    facts = await fits.model_facts()
    assert (facts.dimensions, facts.architecture, facts.can_embed) == (512, "bert", True)


async def test_dimensions_shorten_vectors(make_embedder: Any, ollama: OllamaStandin) -> None:
    embedder = make_embedder(embed_dimensions=256)
    result = await embedder.embed_documents(["a", "b"])
    assert {len(v) for v in result.vectors} == {256}
    assert _embed_calls(ollama)[0]["dimensions"] == 256


async def test_keep_alive_and_options_are_sent(make_embedder: Any, ollama: OllamaStandin) -> None:
    embedder = make_embedder(ollama_keep_alive="300", ollama_options={"num_ctx": 64})
    await embedder.embed_documents(["x"])
    call = _embed_calls(ollama)[0]
    assert call["keep_alive"] == 300
    assert call["options"] == {"num_ctx": 64}
    assert keep_alive_value("5m") == "5m"
    assert keep_alive_value("-1") == -1


async def test_too_long_with_truncation_off_names_the_position(
    make_embedder: Any,
) -> None:
    embedder = make_embedder(ollama_truncate=False, embed_batch_size=2)
    texts = ["short", "short too", "fine", "word " * 3000, "fine again"]
    with pytest.raises(InputTooLongError, match="position 3") as caught:
        await embedder.embed_documents(texts)
    assert caught.value.position == 3


async def test_truncation_is_counted(make_embedder: Any) -> None:
    embedder = make_embedder(ollama_options={"num_ctx": 32})
    result = await embedder.embed_documents(["short one", "word " * 100, "another short"])
    assert result.truncated == 1
    assert (await embedder.embed_documents(["short one"])).truncated == 0
    assert estimated_tokens("word " * 100) > 32


@pytest.mark.parametrize(
    "fault",
    [
        Fault.BUSY,
        Fault.RATE_LIMITED,
        Fault.SERVER_ERROR,
        Fault.BAD_GATEWAY,
        Fault.DROP,
        Fault.SLOW,
    ],
)
async def test_transient_faults_are_retried(
    make_embedder: Any, ollama: OllamaStandin, fault: Fault
) -> None:
    embedder = make_embedder(timeout=0.3)
    await embedder.model_facts()
    ollama.script(fault, fault)
    result = await embedder.embed_documents(["a text"])
    assert len(result.vectors) == 1
    assert len(_embed_calls(ollama)) == 3


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.BUSY, EmbedderBusyError),
        (Fault.RATE_LIMITED, EmbedderBusyError),
        (Fault.SERVER_ERROR, BadEmbeddingResponseError),
        (Fault.DROP, EmbedderUnavailableError),
    ],
)
async def test_retries_are_bounded_in_attempts(
    make_embedder: Any, ollama: OllamaStandin, fault: Fault, error: type[Exception]
) -> None:
    embedder = make_embedder()
    await embedder.model_facts()
    ollama.script(*[fault] * 10)
    with pytest.raises(error):
        await embedder.embed_documents(["a text"])
    assert len(_embed_calls(ollama)) == FAST_RETRY.max_attempts


async def test_retries_are_bounded_in_time(make_embedder: Any, ollama: OllamaStandin) -> None:
    slow_policy = RetryPolicy(max_attempts=50, budget_seconds=0.5, base_delay=0.2, max_delay=0.2)
    embedder = make_embedder(retry=slow_policy)
    await embedder.model_facts()
    ollama.script(*[Fault.BUSY] * 50)
    started = time.monotonic()
    with pytest.raises(EmbedderBusyError, match="busy"):
        await embedder.embed_documents(["a text"])
    assert time.monotonic() - started < 1.0
    assert 2 <= len(_embed_calls(ollama)) <= 4


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"input": ["word " * 3000], "truncate": False}, InputTooLongError),
        ({"input": 42}, BadEmbeddingResponseError),
        ({"input": ["x"], "keep_alive": "300"}, BadEmbeddingResponseError),
    ],
)
async def test_client_errors_are_never_retried(
    ollama: OllamaStandin, payload: dict[str, Any], error: type[Exception]
) -> None:
    client = OllamaClient(ollama.url, retry=FAST_RETRY)
    try:
        with pytest.raises(error):
            await client.embed("nomic-embed-text", payload)
        with pytest.raises(ModelNotFoundError):
            await client.embed("never-pulled", {"input": ["x"]})
    finally:
        await client.aclose()
    assert len(_embed_calls(ollama)) == 2


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (Fault.NAN, BadEmbeddingResponseError, "NaN"),
        (Fault.WRONG_COUNT, BadEmbeddingResponseError, "returned 1 vectors for 2 texts"),
        (Fault.WRONG_SIZE, BadEmbeddingResponseError, "767-dimensional"),
    ],
)
async def test_bad_responses_are_rejected(
    make_embedder: Any, ollama: OllamaStandin, fault: Fault, error: type[Exception], message: str
) -> None:
    embedder = make_embedder()
    ollama.script(fault)
    with pytest.raises(error, match=message):
        await embedder.embed_documents(["one", "two"])


async def test_unnormalised_vectors_are_fixed_and_counted(
    make_embedder: Any, ollama: OllamaStandin
) -> None:
    embedder = make_embedder()
    ollama.script(Fault.UNNORMALISED)
    result = await embedder.embed_documents(["one", "two"])
    assert result.renormalised == 1
    for vector in result.vectors:
        assert math.fsum(v * v for v in vector) == pytest.approx(1.0, abs=1e-6)


async def test_unreachable_server_names_the_url(make_embedder: Any, ollama: OllamaStandin) -> None:
    url = ollama.url
    ollama.stop()
    embedder = make_embedder(url=url)
    started = time.monotonic()
    with pytest.raises(EmbedderUnavailableError, match=f"not reachable at {url}"):
        await embedder.embed_documents(["x"])
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("where", "reason"),
    [("closed port", "connection refused"), ("unresolvable name", "name does not resolve")],
)
async def test_nothing_listening_is_not_retried(
    closed_port_url: str, where: str, reason: str
) -> None:
    url = closed_port_url if where == "closed port" else UNRESOLVABLE_URL
    patient = RetryPolicy(max_attempts=50, budget_seconds=60, base_delay=0.25, max_delay=8)
    client = OllamaClient(url, retry=patient)
    started = time.monotonic()
    try:
        with pytest.raises(EmbedderUnavailableError) as caught:
            await client.embed("nomic-embed-text", {"input": ["x"]})
    finally:
        await client.aclose()
    assert time.monotonic() - started < 1  # one attempt: the first retry alone waits 0.125 s+
    message = str(caught.value)
    assert f"not reachable at {url} ({reason})" in message
    assert "`ollama serve` and `ollama pull nomic-embed-text`" in message
    assert "PGRECALL_EMBEDDER=local" in message


async def test_paraphrase_beats_unrelated_through_http(make_embedder: Any) -> None:
    embedder = make_embedder(embed_model="all-minilm")
    result = await embedder.embed_documents(
        ["The cat sat on the mat.", "A feline rested on a rug.", "Quarterly revenue rose 8%."]
    )
    cat, paraphrase, unrelated = result.vectors
    assert (
        sum(a * b for a, b in zip(cat, paraphrase, strict=True))
        > sum(a * b for a, b in zip(cat, unrelated, strict=True)) + 0.1  # 0.87 against 0.73
    )


async def test_pull_streams_progress(ollama: OllamaStandin) -> None:
    client = OllamaClient(ollama.url, retry=FAST_RETRY)
    try:
        statuses = [progress.status async for progress in client.pull("bge-m3")]
        assert statuses[0] == "pulling manifest"
        assert statuses[-1] == "success"
        assert "bge-m3:latest" in await client.tags()
        with pytest.raises(ModelNotFoundError, match="file does not exist"):
            async for _ in client.pull("no-such-model"):
                pass
        assert await client.version() == "0.33.0"
    finally:
        await client.aclose()


async def test_an_injected_transport_replaces_the_network() -> None:
    """The client's policy (retry a 503, then read the answer) tested without a server."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) == 1:
            return httpx.Response(503, json={"error": "server busy, please try again."})
        body = json.loads(request.content)
        return httpx.Response(200, json={"model": body["model"], "embeddings": [[0.6, 0.8]]})

    client = OllamaClient(
        "http://ollama.invalid:11434",
        retry=RetryPolicy(max_attempts=2, base_delay=0.01),
        transport=httpx.MockTransport(answer),
    )
    try:
        reply = await client.embed("m", {"input": ["a"]})
    finally:
        await client.aclose()
    assert seen == ["/api/embed", "/api/embed"]
    assert [list(vector) for vector in reply.embeddings] == [[0.6, 0.8]]
