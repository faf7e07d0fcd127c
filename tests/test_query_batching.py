"""Concurrent recalls share one /api/embed call (embedding/coalesce.py), each getting its own
vector back; failures reach every caller, an input too long reaches only its own."""

from __future__ import annotations

import asyncio

import pytest

from pgrecall import MemoryStore
from pgrecall.errors import ConfigurationError, EmbedderBusyError, InputTooLongError

from .conftest import store_settings
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


async def test_concurrent_recalls_make_one_embed_call_and_each_gets_its_own_answer(
    ollama: OllamaStandin, migrated_dsn: str
) -> None:
    store = await _open(ollama, migrated_dsn, query_batch_wait_ms=50)
    try:
        before = len(_embed_calls(ollama))
        results = await asyncio.gather(
            *(store.recall(text, namespace="team", k=1, mode="vector") for text in MEMORIES)
        )
        calls = _embed_calls(ollama)[before:]
        assert len(calls) == 1
        assert sorted(calls[0]) == sorted(MEMORIES)
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
        ollama.script(Fault.BUSY)
        outcomes = await asyncio.gather(
            *(store.recall(text, namespace="team", mode="vector") for text in MEMORIES[:3]),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, EmbedderBusyError) for outcome in outcomes)
        assert len(_embed_calls(ollama)) - before == 1
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


@pytest.mark.parametrize("wait", [-1, 101])
def test_the_wait_is_bounded(wait: float) -> None:
    with pytest.raises(ConfigurationError, match="PGRECALL_QUERY_BATCH_WAIT_MS"):
        store_settings(query_batch_wait_ms=wait)
