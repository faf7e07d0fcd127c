"""Changing the embedding model without downtime: 2,000 memories moved from the local model
(384 dimensions) to a 768-dimensional Ollama model (the stand-in's nomic-embed-text) while
recall is served; a build killed half-way and resumed; the switch, rollback and drop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest

from pgrecall import (
    Embedding,
    EmbeddingSpaceSwitchedError,
    MemoryInput,
    MemoryStore,
    Settings,
)
from pgrecall.api.schemas import StatsOut
from pgrecall.background.reembed import _CLAIM_AFTER, Reembedder
from pgrecall.db.pool import create_pool
from pgrecall.doctor import space_checks
from pgrecall.embedding import lifecycle
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.embedding.registry import create_embedder
from pgrecall.errors import ConflictError
from pgrecall.spaces import SpaceMover

from .conftest import store_settings
from .ollama_standin import OllamaStandin

COUNT = 2000
NAMESPACES = [f"agent-{n}" for n in range(4)]
# What the switch leaves processes on the old settings to notice it.
RECHECK = 0.2


def _new_settings(ollama: OllamaStandin, **overrides: object) -> Settings:
    return store_settings(
        **{
            "embedder": "ollama",
            "ollama_url": ollama.url,
            "embed_model": "nomic-embed-text",
            "space_recheck_seconds": RECHECK,
            "reembed_batch_size": 100,
            **overrides,
        }
    )


def _texts() -> list[str]:
    return [
        f"note {i}: the {i % 97}th fact about topic {i % 13} and word{i % 31}" for i in range(COUNT)
    ]


async def _seed(store: MemoryStore) -> None:
    """2,000 memories in the local space, with vectors made beforehand (no model run)."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((COUNT, store.space.dimensions))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await store.remember(
        [
            MemoryInput(
                content=text,
                namespace=NAMESPACES[i % len(NAMESPACES)],
                embedding=Embedding(store.space, vectors[i].tolist()),
            )
            for i, text in enumerate(_texts())
        ]
    )


@pytest.fixture
async def old_store(migrated_dsn: str, local_embedder: LocalEmbedder) -> AsyncIterator[MemoryStore]:
    """A process on the old settings (the local model), with 2,000 memories."""
    opened = await MemoryStore.open(
        store_settings(space_recheck_seconds=RECHECK, worker=False),
        dsn=migrated_dsn,
        embedder=local_embedder,
    )
    await _seed(opened)
    yield opened
    await opened.close()


async def _serve_recall(store: MemoryStore, stop: asyncio.Event) -> int:
    """Recall in a loop until stopped; every answer must have hits. Returns how many."""
    served = 0
    while not stop.is_set():
        result = await store.recall("topic 3", namespace=NAMESPACES[served % 4], k=5, mode="vector")
        assert len(result.hits) == 5
        served += 1
        await asyncio.sleep(0.01)
    return served


async def _count(dsn: str, sql: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


async def test_a_store_moves_to_768_dimensions_while_recall_is_served(
    old_store: MemoryStore, migrated_dsn: str, ollama: OllamaStandin
) -> None:
    stop = asyncio.Event()
    serving = asyncio.create_task(_serve_recall(old_store, stop))
    async with await SpaceMover.open(_new_settings(ollama), dsn=migrated_dsn) as mover:
        active, progress = await mover.begin()
        assert (active.space.dimensions, progress.space.dimensions) == (384, 768)
        assert (progress.done, progress.total) == (0, COUNT)
        # The old process writes while the build runs: those memories are built too.
        written_during = asyncio.Event()

        def on_batch(count: int) -> None:
            if not written_during.is_set():
                written_during.set()

        building = asyncio.create_task(mover.build(on_batch))
        await written_during.wait()
        await old_store.remember("a fact written during the build", namespace=NAMESPACES[0])
        embedded = await building
        assert embedded >= COUNT + 1
        stats = await old_store.stats()
        assert stats.building is not None
        assert stats.building.complete
        assert stats.building.total == COUNT + 1

        # A process that reads the active space seldom: the database refuses its old-size vectors.
        lagging = await MemoryStore.open(
            store_settings(space_recheck_seconds=600, worker=False),
            dsn=migrated_dsn,
            embedder=old_store.embedder,
        )
        await lagging.recall("topic 3", namespace=NAMESPACES[0], k=1)
        overview = await mover.overview()
        assert overview.building is not None
        [_, built] = space_checks(overview)
        assert f"{COUNT + 1} of {COUNT + 1} memories (100%); next: pgrecall reembed --switch" in (
            built.detail
        )
        answer = StatsOut.of(stats)
        assert answer.building is not None
        assert answer.building.complete
        assert answer.building.space.startswith("ollama:nomic-embed-text")
        # Served throughout the build; after the switch, an old process's recall finds nothing
        # of its space until it reads the active space again (RECHECK), then it is refused.
        stop.set()
        served = await serving
        switched = await mover.switch()
        assert served > 0
        assert switched.moved == COUNT + 1
        # The old process is told to restart with the new settings.
        with pytest.raises(EmbeddingSpaceSwitchedError, match="restart it with the new settings"):
            await old_store.recall("topic 3", namespace=NAMESPACES[0])
        with pytest.raises(EmbeddingSpaceSwitchedError):
            await old_store.remember("too late", namespace=NAMESPACES[0])
        with pytest.raises(EmbeddingSpaceSwitchedError, match="vectors of another size"):
            await lagging.remember("too late as well", namespace=NAMESPACES[0])
        await lagging.close()
        new_store = await MemoryStore.open(_new_settings(ollama, worker=False), dsn=migrated_dsn)
        try:
            found = await new_store.recall(
                "a fact written during the build", namespace=NAMESPACES[0], k=1, mode="vector"
            )
            assert found.hits[0].content == "a fact written during the build"
            stats = await new_store.stats()
            assert stats.space is not None
            assert stats.space.dimensions == 768
            assert stats.previous_space is not None
            assert stats.previous_space.dimensions == 384
            assert stats.building is None

            back = await mover.switch(rollback=True)
            assert back.new.space.dimensions == 384
            assert back.moved == COUNT + 1
            # The old process works again; the new one is the one told to restart.
            again = await old_store.recall("topic 3", namespace=NAMESPACES[1], k=5, mode="vector")
            assert len(again.hits) == 5
            with pytest.raises(EmbeddingSpaceSwitchedError):
                await new_store.recall("topic 3", namespace=NAMESPACES[0])
        finally:
            await new_store.close()
        # Forward again at once: the rolled-back vectors were kept, nothing is embedded.
        requests = len(list(ollama.embed_requests()))
        assert await mover.build() == 0
        await mover.switch()
        assert len(list(ollama.embed_requests())) == requests
        dropped = await mover.drop_old()
        assert dropped.space.dimensions == 384
        assert (await mover.overview()).previous is None
        with pytest.raises(ConflictError, match="no previous space"):
            await mover.switch(rollback=True)
    assert await _count(migrated_dsn, "SELECT count(*) FROM space_vectors") == 0


async def test_the_switch_is_refused_until_every_memory_has_its_vector(
    old_store: MemoryStore, migrated_dsn: str, ollama: OllamaStandin
) -> None:
    async with await SpaceMover.open(_new_settings(ollama), dsn=migrated_dsn) as mover:
        await mover.begin()
        with pytest.raises(ConflictError, match=f"{COUNT} memories have no vector"):
            await mover.switch()
    # Nothing moved: the old process goes on.
    result = await old_store.recall("topic 3", namespace=NAMESPACES[2], k=3, mode="vector")
    assert len(result.hits) == 3


def _environment(dsn: str, ollama: OllamaStandin, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    return {
        **clean,
        "PGRECALL_DATABASE_URL": dsn,
        "PGRECALL_EMBEDDER": "ollama",
        "PGRECALL_OLLAMA_URL": ollama.url,
        "PGRECALL_EMBED_MODEL": "nomic-embed-text",
        "PGRECALL_AUTO_MIGRATE": "false",
        "PGRECALL_SPACE_RECHECK_SECONDS": str(RECHECK),
        **extra,
    }


_REEMBED = (sys.executable, "-m", "pgrecall.cli", "reembed")


async def _reembed(environment: dict[str, str], *arguments: str) -> tuple[int, str, str]:
    """``pgrecall reembed`` in a subprocess: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *_REEMBED,
        *arguments,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


_BUILT = "SELECT count(*) FROM space_vectors"


async def test_a_build_killed_half_way_resumes_in_two_processes_without_embedding_twice(
    old_store: MemoryStore, migrated_dsn: str, ollama: OllamaStandin
) -> None:
    batch = 50
    environment = _environment(
        migrated_dsn,
        ollama,
        PGRECALL_REEMBED_RATE="1000",  # two seconds for the whole build: time to kill it
        PGRECALL_REEMBED_BATCH_SIZE=str(batch),
    )
    process = await asyncio.create_subprocess_exec(
        *_REEMBED,
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            if await _count(migrated_dsn, _BUILT) >= COUNT // 3 or process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert process.returncode is None, "the build ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        await asyncio.wait_for(process.wait(), 30)
    done = await _count(migrated_dsn, _BUILT)
    assert COUNT // 3 <= done < COUNT

    # Resumed by two processes at once (two pools): they share the rest, none twice.
    settings = _new_settings(ollama, reembed_batch_size=batch)
    async with (
        await SpaceMover.open(settings, dsn=migrated_dsn) as first,
        await SpaceMover.open(settings, dsn=migrated_dsn) as second,
    ):
        _, progress = await first.begin()
        assert progress.done == done
        await second.begin()
        shares = await asyncio.gather(first.build(), second.build())
        assert sum(shares) == COUNT - done
        assert min(shares) > 0
    texts = sum(len(request["input"]) for request in ollama.embed_requests())
    # At most the batch in flight when it was killed is embedded again.
    assert COUNT <= texts <= COUNT + batch

    # The CLI switches (the build is complete), then refuses two actions at once in one line.
    code, stdout, stderr = await _reembed(environment, "--switch")
    assert code == 0, stderr
    assert "switched to ollama:nomic-embed-text" in stdout
    assert "0 memories embedded by this process" in stdout
    assert " indexes compacted in " in stdout  # the switch's last step, unless --no-compact
    heap = re.search(r"the heap of memories ([\d,]+) pages before the move, ([\d,]+) after", stdout)
    assert heap is not None, stdout
    before, after = (int(pages.replace(",", "")) for pages in heap.groups())
    # Twice the pages for twice the dimensions (501 -> 1,000 measured), not twice again for
    # the move's dead half (tests/test_compaction.py holds the size in one space).
    assert 0 < after <= 2.1 * before, stdout
    code, stdout, stderr = await _reembed(environment, "--compact")  # again, as after a kill
    assert code == 0, stderr
    compacted = re.match(r"(\d+) indexes compacted in ", stdout)
    assert compacted is not None, stdout
    assert int(compacted[1]) > 1
    code, _, stderr = await _reembed(environment, "--rollback", "--drop-old")
    assert code == 2
    assert stderr.strip().count("\n") == 0
    assert "one at a time" in stderr
    code, _, stderr = await _reembed(environment, "--drop-old", "--compact")
    assert code == 2
    assert "--compact alone or with --switch or --rollback" in stderr
    # Back and forth again without the compaction: no index rebuilt.
    code, stdout, stderr = await _reembed(environment, "--rollback", "--no-compact")
    assert code == 0, stderr
    assert "rolled back to local:" in stdout
    assert " compacted " not in stdout
    code, stdout, stderr = await _reembed(environment, "--switch", "--no-compact")
    assert code == 0, stderr
    assert "switched to ollama:nomic-embed-text" in stdout
    assert " compacted " not in stdout
    code, stdout, _ = await _reembed(environment, "--drop-old")
    assert code == 0
    assert "dropped the vectors of local:" in stdout
    code, _, stderr = await _reembed(environment, "--rollback")
    assert code == 2
    assert "no previous space" in stderr


def _rows_read(plan: dict[str, object], relation: str) -> float:
    """Rows the plan's nodes over ``relation`` returned, over all their loops."""
    own = 0.0
    if plan.get("Relation Name") == relation:
        own = float(plan["Actual Rows"]) * float(plan["Actual Loops"])  # type: ignore[arg-type]
    children = plan.get("Plans", [])
    assert isinstance(children, list)
    return own + sum(_rows_read(child, relation) for child in children)


async def test_each_claim_starts_where_the_last_batch_of_its_namespace_ended(
    old_store: MemoryStore, migrated_dsn: str, ollama: OllamaStandin
) -> None:
    """The build claims a namespace's missing memories in id order from where its previous
    batch ended: a claim reads the next batch, not every vector built before it (it did: a
    claim half-way through 100k memories read 50k, and the build ran at ~200 vectors/s)."""
    batch, batches = 50, 8
    async with await SpaceMover.open(_new_settings(ollama), dsn=migrated_dsn) as mover:
        await mover.begin()
    pool = await create_pool(migrated_dsn, min_size=1, max_size=2)
    embedder = create_embedder(_new_settings(ollama))
    try:
        found = await lifecycle.states(pool)
        active, building = found["active"].id, found["building"].id
        claimer = Reembedder(pool, embedder, active, building, batch)
        after = None
        for _ in range(batches):
            claimed = await claimer.batch(NAMESPACES[0], after)
            assert claimed.embedded == batch
            assert claimed.last is not None
            assert after is None or claimed.last > after
            after = claimed.last
    finally:
        await embedder.aclose()
        await pool.close()
    built = f"SELECT count(*) FROM space_vectors WHERE memory_id <= '{after}'"
    assert await _count(migrated_dsn, built) == batch * batches

    connection = await asyncpg.connect(migrated_dsn)
    try:
        await connection.execute("ANALYZE")
        claiming = connection.transaction()
        await claiming.start()
        try:
            explained = await connection.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {_CLAIM_AFTER}",
                active,
                building,
                NAMESPACES[0],
                batch,
                after,
            )
        finally:
            await claiming.rollback()  # the claim's row locks with it
    finally:
        await connection.close()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    assert plan["Actual Rows"] == batch
    # Both were every memory done before (400 of the namespace's 500).
    assert _rows_read(plan, "memories") <= batch
    assert _rows_read(plan, "space_vectors") <= batch
