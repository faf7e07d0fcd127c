"""Durable ingestion under faults: real PostgreSQL, stand-in Ollama, exact counts at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgrecall import MemoryInput, MemoryStore
from pgrecall.config import Settings
from pgrecall.db import migrate
from pgrecall.db.embedded import EmbeddedPostgres, _run_pg_ctl
from pgrecall.transfer.importer import import_lines

from .conftest import TEST_DIMENSIONS, store_settings
from .fakes import HashEmbedder, SlowHashEmbedder
from .ollama_standin import Fault, OllamaStandin, StandinModel, _hash_vector, _normalise, _tokens

MODEL = "test-384"


@pytest.fixture
def standin(ollama: OllamaStandin) -> OllamaStandin:
    ollama.state.models[f"{MODEL}:latest"] = StandinModel(
        f"{MODEL}:latest", "bert", TEST_DIMENSIONS, 512, None
    )
    return ollama


def durable_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "embedder": "ollama",
        "ollama_url": url,
        "embed_model": MODEL,
        "embed_dimensions": TEST_DIMENSIONS,
        "ollama_max_attempts": 2,
        "ollama_retry_budget": 1.0,
        "ollama_timeout": 5.0,
        "inline_embed_timeout": 5.0,
        "worker_batch_size": 256,
        "worker_poll_seconds": 0.2,
        "embed_backoff_seconds": 0.05,
        "embed_backoff_max_seconds": 0.5,
        "embed_max_attempts": 50,
        "ingest_chunk_size": 500,
    }
    return store_settings(**{**values, **overrides})


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met within {seconds} s")


async def all_embedded(store: MemoryStore, expected: int) -> bool:
    stats = await store.stats()
    return stats.embedded == expected and stats.memories == expected


async def assert_vectors_are_right(dsn: str, expected_rows: int) -> None:
    """Every stored vector is the stand-in's vector for that very text, unit length."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT content, embedding::text AS vector, status FROM memories"
        )
        distinct = await connection.fetchval(
            "SELECT count(DISTINCT (namespace, content)) FROM memories"
        )
    finally:
        await connection.close()
    assert len(rows) == expected_rows
    assert distinct == expected_rows
    for row in rows:
        assert row["status"] == "embedded"
        stored = np.array(row["vector"][1:-1].split(","), dtype=np.float64)
        expected = np.array(_normalise(_hash_vector(_tokens(row["content"]), TEST_DIMENSIONS)))
        assert np.allclose(stored, expected, atol=1e-6), row["content"]
        assert abs(np.linalg.norm(stored) - 1.0) < 1e-5


async def test_ollama_down_for_the_first_half_of_an_import(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    items = [MemoryInput(f"memory number {i} about topic {i % 17}") for i in range(5000)]
    url = standin.url
    standin.stop()
    store = await MemoryStore.open(durable_settings(url), dsn=migrated_dsn)
    try:
        started = time.monotonic()
        first = await store.remember(items[:2500], namespace="import")
        assert time.monotonic() - started < 20  # stored at once, not after retries per chunk
        assert {r.status for r in first} == {"pending"}
        stats = await store.stats()
        assert (stats.memories, stats.pending) == (2500, 2500)

        standin.start()
        second = await store.remember(items[2500:], namespace="import")
        assert len({r.id for r in first + second}) == 5000
        await wait_until(lambda: all_embedded(store, 5000))
        final = await store.recall("memory number 3", namespace="import", k=5)
        assert final.pending == 0
        assert len(final) == 5
    finally:
        await store.close()
    await assert_vectors_are_right(migrated_dsn, 5000)


@pytest.mark.engines
async def test_recall_reports_what_is_still_pending(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    url = standin.url
    store = await MemoryStore.open(durable_settings(url, worker=False), dsn=migrated_dsn)
    try:
        await store.remember([f"embedded {i}" for i in range(5)], namespace="mixed")
        standin.stop()
        waiting = await store.remember([f"waiting {i}" for i in range(3)], namespace="mixed")
        assert [r.pending for r in waiting] == [True, True, True]
        standin.start()
        hits = await store.recall("embedded", namespace="mixed", k=10)
        assert len(hits) == 5
        assert hits.pending == 3
        store.start_worker()
        await wait_until(lambda: all_embedded(store, 8))
        assert (await store.recall("embedded", namespace="mixed", k=10)).pending == 0
    finally:
        await store.close()


@pytest.mark.engines
async def test_random_faults_lose_nothing_and_store_no_bad_vector(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    standin.state.fault_shares = {
        Fault.BUSY: 0.1,
        Fault.SERVER_ERROR: 0.1,
        Fault.NAN: 0.05,
        Fault.WRONG_SIZE: 0.05,
        Fault.WRONG_COUNT: 0.05,
        Fault.DROP: 0.05,
    }
    store = await MemoryStore.open(
        durable_settings(standin.url, ingest_chunk_size=50, worker_batch_size=40),
        dsn=migrated_dsn,
    )
    try:
        for start in range(0, 1000, 100):
            batch = [f"fact {i}: the value is {i * 7}" for i in range(start, start + 100)]
            results = await store.remember(batch, namespace="faulty")
            assert {r.status for r in results} <= {"embedded", "pending"}
        await wait_until(lambda: all_embedded(store, 1000))
    finally:
        await store.close()
    faults_served = len(list(standin.embed_requests()))
    assert faults_served > 20
    await assert_vectors_are_right(migrated_dsn, 1000)


@pytest.mark.engines
async def test_parallel_workers_never_embed_a_memory_twice(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    url = standin.url
    standin.stop()
    writer = await MemoryStore.open(durable_settings(url, worker=False), dsn=migrated_dsn)
    try:
        await writer.remember([f"queued {i}" for i in range(500)], namespace="q")
    finally:
        await writer.close()
    standin.start()
    standin.state.latency = 0.05
    workers = [
        await MemoryStore.open(durable_settings(url, worker_batch_size=25), dsn=migrated_dsn)
        for _ in range(3)
    ]
    try:
        await wait_until(lambda: all_embedded(workers[0], 500))
    finally:
        for store in workers:
            await store.close()
    embedded_texts = [text for body in standin.embed_requests() for text in body["input"]]
    assert len(embedded_texts) == 500
    assert set(embedded_texts) == {f"queued {i}" for i in range(500)}


@pytest.mark.engines
async def test_the_worker_checks_its_space_on_the_claims_one_connection(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    """A claim holds the pool's only connection while the worker checks the store's space:
    recording it (a store with none) and reading it again (every call here) go on that
    connection. On a second one from the pool the claim waited for itself, for ever."""
    store = await MemoryStore.open(
        durable_settings(
            standin.url, worker=False, pool_min_size=1, pool_max_size=1, space_recheck_seconds=0.01
        ),
        dsn=migrated_dsn,
    )
    connection = await asyncpg.connect(migrated_dsn)
    try:
        standin.stop()
        await store.remember(
            [MemoryInput(f"queued {i}", namespace=("one", "two")[i % 2]) for i in range(3)]
        )
        # No space recorded yet, as in a store whose first memories all waited for the worker.
        await connection.execute("DELETE FROM embedding_spaces")
        standin.start()
        assert await asyncio.wait_for(store.worker.run_once(), 30) == 3
        assert await connection.fetchval("SELECT count(*) FROM embedding_spaces") == 1
        standin.stop()
        await store.remember(["queued later"], namespace="one")
        standin.start()
        await asyncio.sleep(0.05)  # the space is due to be read again
        assert await asyncio.wait_for(store.worker.run_once(), 30) == 1
        assert await all_embedded(store, 4)
    finally:
        await connection.close()
        await store.close()


async def _mid_batch(writer: MemoryStore, standin: OllamaStandin, generator: random.Random) -> None:
    """Return once a worker has committed a batch and sent the next one (its claim is held for
    the standin's latency), a random part of the way into that call. Waiting on progress, not
    on a fixed time: on a loaded machine a worker process took longer than a fixed 2-3.5 s to
    start, and was killed before it had embedded anything."""
    embedded = (await writer.stats()).embedded

    async def committed() -> bool:
        return (await writer.stats()).embedded > embedded

    await wait_until(committed, 120)
    sent = len(list(standin.embed_requests()))

    async def sending() -> bool:
        return len(list(standin.embed_requests())) > sent

    await wait_until(sending, 120)
    await asyncio.sleep(generator.uniform(0.0, standin.state.latency / 2))


async def test_killed_workers_leave_nothing_claimed(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    url = standin.url
    standin.stop()
    writer = await MemoryStore.open(durable_settings(url, worker=False), dsn=migrated_dsn)
    await writer.remember([f"job {i}" for i in range(900)], namespace="jobs")
    standin.start()
    standin.state.latency = 0.4  # every batch is in flight for a while
    environment = {
        **os.environ,
        "PGRECALL_DATABASE_URL": migrated_dsn,
        "PGRECALL_OLLAMA_URL": url,
        "PGRECALL_EMBED_MODEL": MODEL,
        "PGRECALL_EMBED_DIMENSIONS": str(TEST_DIMENSIONS),
        "PGRECALL_WORKER_BATCH_SIZE": "30",
        "PGRECALL_WORKER_POLL_SECONDS": "0.2",
    }
    generator = random.Random(3)
    try:
        for _ in range(3):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pgrecall.cli",
                "worker",
                env=environment,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await _mid_batch(writer, standin, generator)
            process.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
        partial = await writer.stats()
        assert partial.memories == 900
        assert 0 < partial.embedded < 900
        writer.start_worker()
        await wait_until(lambda: all_embedded(writer, 900))
    finally:
        await writer.close()
    connection = await asyncpg.connect(migrated_dsn)
    try:
        claimable = await connection.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM memories FOR UPDATE SKIP LOCKED) rows"
        )
        stuck = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        )
    finally:
        await connection.close()
    assert claimable == 900
    assert stuck == 0
    await assert_vectors_are_right(migrated_dsn, 900)


@pytest.mark.engines
async def test_permanent_failures_are_reported_and_retried_on_demand(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    missing = durable_settings(standin.url, embed_model="bge-m3", embed_dimensions=None)
    bge_space_store = await MemoryStore.open(
        durable_settings(standin.url, embed_model="bge-m3", embed_dimensions=384),
        dsn=migrated_dsn,
    )
    assert missing.model == "bge-m3"
    try:
        result = await bge_space_store.remember("needs a model", namespace="p")
        assert result.status == "failed"
        assert "ollama pull bge-m3" in (result.error or "")
        failed = await bge_space_store.list(status="failed")
        assert [m.content for m in failed.memories] == ["needs a model"]
        assert (await bge_space_store.stats()).failed == 1
        standin.state.models["bge-m3:latest"].pulled = True
        standin.state.models["bge-m3:latest"].dimensions = 384
        assert await bge_space_store.retry_failed() == 1
        await wait_until(lambda: all_embedded(bge_space_store, 1))
    finally:
        await bge_space_store.close()


async def test_too_long_input_fails_alone(standin: OllamaStandin, migrated_dsn: str) -> None:
    store = await MemoryStore.open(
        durable_settings(standin.url, ollama_truncate=False), dsn=migrated_dsn
    )
    try:
        results = await store.remember(["short one", "word " * 3000, "short two"], namespace="t")
        assert [r.status for r in results] == ["embedded", "failed", "embedded"]
        assert "position 1" in (results[1].error or "")
        stats = await store.stats()
        assert (stats.embedded, stats.failed) == (2, 1)
    finally:
        await store.close()


@pytest.fixture
def restartable_server() -> Iterator[tuple[str, Path]]:
    data_dir = Path(tempfile.mkdtemp(prefix="pgrecall-restart-"))
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    yield dsn, server.pgdata
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


async def test_postgres_restart_during_import(
    restartable_server: tuple[str, Path],
) -> None:
    dsn, pgdata = restartable_server
    await migrate.upgrade(dsn, TEST_DIMENSIONS)
    lines = [f'{{"content": "line {i} of the import"}}' for i in range(4000)]
    # 20 chunks at 50 ms of embedding each: the import is still running at the restart.
    store = await MemoryStore.open(
        store_settings(ingest_chunk_size=200), dsn=dsn, embedder=SlowHashEmbedder(0.05)
    )
    try:
        importing = asyncio.create_task(import_lines(store, lines, namespace="restart"))
        await asyncio.sleep(0.3)
        assert not importing.done()
        restarted = await asyncio.to_thread(_run_pg_ctl, pgdata, "-m", "fast", "-w", "restart")
        assert restarted.returncode == 0, restarted.stdout
        # An interrupted import may fail; the re-run must make it whole.
        with contextlib.suppress(Exception):
            await importing
        report = await import_lines(store, lines, namespace="restart")
        assert report.stored == 4000
        assert report.rejected == []
        stats = await store.stats()
        assert (stats.memories, stats.embedded) == (4000, 4000)
    finally:
        await store.close()


async def test_concurrent_writers_and_readers(migrated_dsn: str) -> None:
    store = await MemoryStore.open(
        store_settings(pool_max_size=20), dsn=migrated_dsn, embedder=HashEmbedder()
    )
    written: list[int] = [0] * 16
    errors: list[BaseException] = []
    deadline = time.monotonic() + 4.0

    async def writer(number: int) -> None:
        batch = 0
        while time.monotonic() < deadline:
            texts = [f"writer {number} batch {batch} item {i}" for i in range(5)]
            results = await store.remember(texts, namespace=f"ns{number % 4}")
            written[number] += sum(r.created for r in results)
            batch += 1

    async def reader(number: int) -> None:
        while time.monotonic() < deadline:
            try:
                hits = await store.recall("writer batch item", namespace=f"ns{number % 4}", k=5)
            except Exception as exc:  # only "nothing written yet" is allowed
                if "no memories in namespace" not in str(exc):
                    raise
                await asyncio.sleep(0.01)
                continue
            assert all(hit.namespace == f"ns{number % 4}" for hit in hits)

    async def guarded(work: Awaitable[None]) -> None:
        try:
            await work
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    try:
        await asyncio.gather(
            *(guarded(writer(n)) for n in range(16)), *(guarded(reader(n)) for n in range(16))
        )
        stats = await store.stats()
    finally:
        await store.close()
    assert errors == []
    assert sum(written) > 100
    assert stats.memories == sum(written)
    assert stats.embedded == sum(written)


async def test_closing_finishes_the_batch_in_hand(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    url = standin.url
    standin.stop()
    writer = await MemoryStore.open(durable_settings(url, worker=False), dsn=migrated_dsn)
    await writer.remember([f"slow {i}" for i in range(20)], namespace="s")
    await writer.close()
    standin.start()
    standin.state.latency = 1.0
    store = await MemoryStore.open(durable_settings(url, worker_batch_size=10), dsn=migrated_dsn)
    await wait_until(lambda: _requests_started(standin), 10)
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 5
    checker = await MemoryStore.open(durable_settings(url, worker=False), dsn=migrated_dsn)
    try:
        stats = await checker.stats()
        assert stats.embedded == 10  # the batch in hand was finished, no other was started
        assert stats.pending == 10
    finally:
        await checker.close()


async def _requests_started(standin: OllamaStandin) -> bool:
    return any(True for _ in standin.embed_requests())


async def test_worker_command_stops_cleanly_on_sigterm(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    environment = {
        **os.environ,
        "PGRECALL_DATABASE_URL": migrated_dsn,
        "PGRECALL_OLLAMA_URL": standin.url,
        "PGRECALL_EMBED_MODEL": MODEL,
        "PGRECALL_EMBED_DIMENSIONS": str(TEST_DIMENSIONS),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pgrecall.cli",
        "worker",
        env=environment,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), 60)
    assert b"worker running" in line
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_an_update_while_ollama_is_down_is_embedded_once_it_answers(
    standin: OllamaStandin, migrated_dsn: str
) -> None:
    """update follows remember's policy: pending at once while Ollama is down, and the worker is
    woken (NOTIFY) instead of finding the memory at its next poll, a minute away here."""
    settings = durable_settings(
        standin.url, worker_poll_seconds=60.0, embed_backoff_max_seconds=0.2
    )
    store = await MemoryStore.open(settings, dsn=migrated_dsn)
    try:
        first = await store.remember("Ada lives in Paris.", namespace="ada")
        assert not first.pending
        standin.stop()
        changed = await store.update(first.id, namespace="ada", content="Ada lives in Lyon.")
        assert changed.status == "pending"
        await asyncio.sleep(1.0)  # the woken worker meets the outage and backs off
        assert (await store.get(first.id, namespace="ada")).status == "pending"
        standin.start()
        back = time.monotonic()
        while (await store.get(first.id, namespace="ada")).status != "embedded":
            assert time.monotonic() - back < 1.0, "not embedded within 1 s of Ollama answering"
            await asyncio.sleep(0.02)
    finally:
        await store.close()
    embedded_texts = [text for body in standin.embed_requests() for text in body["input"]]
    assert embedded_texts[-1] == "Ada lives in Lyon."
