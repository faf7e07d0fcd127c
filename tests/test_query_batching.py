"""Concurrent recalls share one /api/embed call (embedding/coalesce.py), each getting its own
vector back; failures reach every caller, an input too long reaches only its own."""

from __future__ import annotations

import asyncio

import pytest

from pgrecall import MemoryStore
from pgrecall.embedding.base import BatchOutput
from pgrecall.embedding.coalesce import QueryCoalescer
from pgrecall.errors import ConfigurationError, EmbedderBusyError, InputTooLongError

from .conftest import store_settings
from .fakes import SlowHashEmbedder, text_vector
from .ollama_standin import Fault, OllamaStandin

MEMORIES = [
    "Ada is allergic to peanuts.",
    "The invoice is due on the first of March.",
    "Bob plays the cello in a quartet.",
    "The server room is kept at eighteen degrees.",
    "Carol moved to Lisbon last spring.",
    "The backup runs every night at two.",
]


async def _open(ollama: OllamaStandin, dsn: str, **overrides: object) -> MemoryStore:
    settings = store_settings(
        embedder="ollama",
        ollama_url=ollama.url,
        embed_model="all-minilm",  # 384-d, the test databases' size
        worker=False,
        inline_embed_timeout=120,  # embedded inline even on a loaded machine: recall needs vectors
        **overrides,
    )
    store = await MemoryStore.open(settings, dsn=dsn)
    remembered = await store.remember(MEMORIES, namespace="team")
    assert all(item.status == "embedded" for item in remembered)
    # Sizes and space cached, so concurrent recalls reach their embed calls together.
    await store.recall(MEMORIES[0], namespace="team", mode="vector")
    return store


def _embed_calls(ollama: OllamaStandin) -> list[list[str]]:
    return [body["input"] for body in ollama.embed_requests()]


async def test_concurrent_recalls_share_embed_calls_and_each_gets_its_own_answer(
    ollama: OllamaStandin, migrated_dsn: str
) -> None:
    store = await _open(ollama, migrated_dsn, query_batch_wait_ms=50)
    try:
        before = len(_embed_calls(ollama))
        results = await asyncio.gather(
            *(store.recall(text, namespace="team", k=1, mode="vector") for text in MEMORIES)
        )
        calls = _embed_calls(ollama)[before:]
        # The first goes at once (nothing in flight); the others, asked meanwhile, share one.
        assert calls[0] == [MEMORIES[0]]
        assert len(calls) == 2
        assert sorted(calls[1]) == sorted(MEMORIES[1:])
        assert [result[0].content for result in results] == MEMORIES
    finally:
        await store.close()


async def test_no_wait_embeds_each_query_alone(ollama: OllamaStandin, migrated_dsn: str) -> None:
    store = await _open(ollama, migrated_dsn, query_batch_wait_ms=0)
    try:
        before = len(_embed_calls(ollama))
        await asyncio.gather(
            *(store.recall(text, namespace="team", k=1, mode="vector") for text in MEMORIES[:3])
        )
        assert [len(call) for call in _embed_calls(ollama)[before:]] == [1, 1, 1]
    finally:
        await store.close()


async def test_a_busy_embedder_fails_every_recall_of_the_batch(
    ollama: OllamaStandin, migrated_dsn: str
) -> None:
    store = await _open(ollama, migrated_dsn, query_batch_wait_ms=50, ollama_max_attempts=1)
    try:
        before = len(_embed_calls(ollama))
        ollama.script(Fault.BUSY, Fault.BUSY)  # the lone first call, then the shared one
        outcomes = await asyncio.gather(
            *(store.recall(text, namespace="team", mode="vector") for text in MEMORIES[:3]),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, EmbedderBusyError) for outcome in outcomes), outcomes
        assert len(_embed_calls(ollama)) - before == 2
    finally:
        await store.close()


async def test_a_query_too_long_fails_alone(ollama: OllamaStandin, migrated_dsn: str) -> None:
    store = await _open(ollama, migrated_dsn, query_batch_wait_ms=50, ollama_truncate=False)
    try:
        too_long = " ".join(["peanuts"] * 600)  # past the stand-in model's 256 tokens
        outcomes = await asyncio.gather(
            store.recall(MEMORIES[0], namespace="team", k=1, mode="vector"),
            store.recall(too_long, namespace="team", k=1, mode="vector"),
            store.recall(MEMORIES[2], namespace="team", k=1, mode="vector"),
            return_exceptions=True,
        )
        first, long_one, third = outcomes
        assert isinstance(long_one, InputTooLongError)
        assert "position 0" in str(long_one)
        assert not isinstance(first, BaseException)
        assert first[0].content == MEMORIES[0]
        assert not isinstance(third, BaseException)
        assert third[0].content == MEMORIES[2]
    finally:
        await store.close()


class _TaskRecordingEmbedder(SlowHashEmbedder):
    """Records the task each batch is embedded in, and the texts of each call."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.tasks: list[asyncio.Task[object] | None] = []
        self.batches: list[list[str]] = []

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        self.tasks.append(asyncio.current_task())
        self.batches.append(list(texts))
        return await super()._embed_batch(texts)


async def test_a_lone_query_is_embedded_in_its_callers_task() -> None:
    embedder = _TaskRecordingEmbedder(delay=0)
    queries = QueryCoalescer(embedder, wait_seconds=0.05, max_batch=16)
    vector = await queries.embed("who plays the cello?")
    assert embedder.tasks == [asyncio.current_task()]
    assert vector == pytest.approx(text_vector("who plays the cello?").tolist(), abs=1e-6)


async def test_queries_asked_during_a_lone_call_share_the_next_one() -> None:
    embedder = _TaskRecordingEmbedder(delay=0.05)
    queries = QueryCoalescer(embedder, wait_seconds=0.02, max_batch=16)
    texts = ["first", "second", "third", "fourth"]
    vectors = await asyncio.gather(*(queries.embed(text) for text in texts))
    assert embedder.batches == [["first"], ["second", "third", "fourth"]]
    assert embedder.tasks[0] is not embedder.tasks[1]  # the shared call runs in a task of its own
    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(text_vector(text).tolist(), abs=1e-6)


class _RefusingEmbedder(_TaskRecordingEmbedder):
    """Refuses every text that starts with "long", as a model refuses an input too long."""

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        if any(text.startswith("long") for text in texts):
            raise InputTooLongError("the input at position 0 is too long", position=0)
        return await super()._embed_batch(texts)


async def test_a_lone_querys_failure_is_raised_to_it_and_the_next_goes_alone() -> None:
    embedder = _RefusingEmbedder(delay=0)
    queries = QueryCoalescer(embedder, wait_seconds=0.05, max_batch=16)
    with pytest.raises(InputTooLongError, match="position 0"):
        await queries.embed("long " * 10)
    vector = await queries.embed("after")
    assert embedder.tasks == [asyncio.current_task()]  # not held behind a call still counted
    assert vector == pytest.approx(text_vector("after").tolist(), abs=1e-6)


@pytest.mark.parametrize("wait", [-1, 101])
def test_the_wait_is_bounded(wait: float) -> None:
    with pytest.raises(ConfigurationError, match="PGRECALL_QUERY_BATCH_WAIT_MS"):
        store_settings(query_batch_wait_ms=wait)
