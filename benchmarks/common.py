"""What the benchmark scripts share: synthetic memories, precomputed vectors, a server, timing.

Vectors are synthetic around real ones: HNSW accuracy depends on how vectors are spread, and
real sentence embeddings are clustered by topic, nothing like uniform noise. The local model
embeds the SciFact abstracts' titles once (cached in ``out/centers.npy``); each memory is one
of those vectors plus Gaussian noise of norm ``SPREAD`` (cosine ~0.78 to its centre, as far
as two different memories on one topic), normalised. ``uniform=True`` gives uniform random
unit vectors instead: the worst case for a graph.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np

from pgrecall import MemoryInput, MemoryStore
from pgrecall.db import migrate
from pgrecall.db.embedded import database_dsn
from pgrecall.embedding.base import BatchingEmbedder, BatchOutput
from pgrecall.embedding.space import EmbeddingSpace

DIMENSIONS = 384
VOCABULARY = 20_000
STOP_WORDS = 100
WORDS_PER_MEMORY = 12
OUT = Path(__file__).resolve().parent / "out"
SETTLE_SECONDS = 600
SETTLE_POLL_SECONDS = 0.2
# The synthetic memories carry dialogue-like metadata (speaker, session) but their precomputed
# vectors are of the content: stores here index the content alone, with no context, as these
# figures always measured (the dialogue defaults are measured by benchmarks/locomo.py).
CONTENT_ONLY = {"index_template": "{content}", "context_key": ""}


@dataclass(frozen=True)
class Corpus:
    """Memories to load: text, metadata, namespace and a unit vector each."""

    texts: list[str]
    metadata: list[dict[str, object]]
    namespaces: list[str]
    vectors: np.ndarray  # float32, (n, DIMENSIONS), unit rows


_RANKS = np.arange(STOP_WORDS + 1, STOP_WORDS + VOCABULARY + 1)
_WEIGHTS = _RANKS**-1.1 / np.sum(_RANKS**-1.1)


def sentences(
    count: int, generator: np.random.Generator, tag: str = "", words: int = WORDS_PER_MEMORY
) -> list[str]:
    """``words`` (12) words drawn from a Zipf (s=1.1) distribution over word ranks 101-20,100:
    English word frequencies without the 100 most frequent words (stop words, which keyword
    search drops), plus a unique token so every text is distinct."""
    ranks = generator.choice(_RANKS, size=(count, words), p=_WEIGHTS)
    return [" ".join(f"w{rank}" for rank in row) + f" n{tag}{i}" for i, row in enumerate(ranks)]


SPREAD = 0.8
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "eval" / "scifact" / "memories.jsonl"


# Sentences standing in for the titles in a clone without ../shared (the CI's tiny runs).
SYNTHETIC_TITLES = 300


def titles(count: int | None = None) -> list[str]:
    """Short real sentences: the distinct titles of the SciFact abstracts. Without the SciFact
    data beside the repository, synthetic ones (``sentences``), and stderr says so: enough to
    keep the scripts working, not figures to compare with RESULTS.md."""
    if not SCIFACT.exists():
        print(
            f"{SCIFACT} not found: synthetic sentences instead of SciFact titles",
            file=sys.stderr,
            flush=True,
        )
        return sentences(count or SYNTHETIC_TITLES, np.random.default_rng(0), tag="title-")
    with SCIFACT.open(encoding="utf-8") as lines:
        texts = [json.loads(line)["text"].split(". ")[0] for line in lines]
    return list(dict.fromkeys(texts))[:count]


def centers() -> np.ndarray:
    """Local-model vectors of the SciFact titles (computed once, then read from a cache named
    for the model's release); of synthetic sentences, cached apart, without SciFact."""
    from pgrecall.embedding.backends import LOCAL_EMBEDDER_VERSION

    kind = "centers" if SCIFACT.exists() else "centers-synthetic"
    cache = OUT / f"{kind}-{LOCAL_EMBEDDER_VERSION.replace('==', '-')}.npy"
    if cache.exists():
        return np.load(cache)
    from pgrecall import load_settings
    from pgrecall.embedding.local import LocalEmbedder
    from pgrecall.embedding.space import configured_space

    async def embed() -> list[list[float]]:
        embedder = LocalEmbedder(configured_space(load_settings(embedder="local")))
        try:
            return (await embedder.embed_documents(titles())).vectors
        finally:
            await embedder.aclose()

    print("embedding the titles once for the benchmark vectors", flush=True)
    # A thread of its own: callers may be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        computed = thread.submit(asyncio.run, embed()).result()
    vectors = np.asarray(computed, dtype=np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def unit_vectors(count: int, generator: np.random.Generator, uniform: bool = False) -> np.ndarray:
    """``count`` unit vectors: around random real centres, or uniform on the sphere."""
    noise = generator.standard_normal((count, DIMENSIONS), dtype=np.float32)
    if uniform:
        raw = noise
    else:
        real = centers()
        raw = real[generator.integers(0, len(real), count)] + SPREAD / np.sqrt(DIMENSIONS) * noise
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def corpus(namespaces: Sequence[tuple[str, int]], seed: int = 1, uniform: bool = False) -> Corpus:
    """``count`` memories per ``(namespace, count)``, with dialogue-like metadata."""
    generator = np.random.default_rng(seed)
    texts: list[str] = []
    names: list[str] = []
    for name, count in namespaces:
        texts.extend(sentences(count, generator, tag=f"{name}-"))
        names.extend([name] * count)
    metadata: list[dict[str, object]] = [
        {"speaker": ("user", "assistant")[i % 2], "turn": i, "session": f"s{i // 50}"}
        for i in range(len(texts))
    ]
    return Corpus(texts, metadata, names, unit_vectors(len(texts), generator, uniform))


class PrecomputedEmbedder(BatchingEmbedder):
    """Returns vectors computed beforehand (``learn``), or a seeded one for other texts, so the
    figures are the database's and the store's alone. ``model`` names its embedding space (two
    names make two spaces of the same vectors: benchmarks/switch_cost.py).

    Each answer is a fresh list, what an embedder client hands over; the learned vectors stay in
    one array: held as 100k lists of floats they made every full garbage collection of the
    benchmark process walk 38M references (1.3 s of CPU in a 100k ingest).
    """

    def __init__(self, model: str = "precomputed") -> None:
        super().__init__(
            EmbeddingSpace("bench", model, DIMENSIONS, "", ""),
            batch_size=100_000,
            batch_chars=10**12,
            concurrency=1,
        )
        self.rows: dict[str, int] = {}
        self.vectors = np.empty((0, DIMENSIONS), dtype=np.float32)

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        return BatchOutput(vectors=[self.vector(text) for text in texts])

    def learn(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Answer ``texts`` with ``vectors`` from now on."""
        offset = len(self.vectors)
        self.vectors = np.concatenate([self.vectors, vectors.astype(np.float32)])
        self.rows.update((text, offset + i) for i, text in enumerate(texts))

    def forget(self) -> None:
        """Drop what ``learn`` taught."""
        self.rows.clear()
        self.vectors = self.vectors[:0]

    def vector(self, text: str) -> list[float]:
        row = self.rows.get(text)
        if row is not None:
            return self.vectors[row].tolist()  # type: ignore[no-any-return]
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        return unit_vectors(1, np.random.default_rng(seed))[0].tolist()  # type: ignore[no-any-return]


async def remember_all(store: MemoryStore, data: Corpus, per_call: int = 1000) -> float:
    """Write ``data`` through ``remember``, ``per_call`` memories a call; returns seconds."""
    started = time.perf_counter()
    for start in range(0, len(data.texts), per_call):
        items = [
            MemoryInput(data.texts[i], metadata=data.metadata[i], namespace=data.namespaces[i])
            for i in range(start, min(start + per_call, len(data.texts)))
        ]
        await store.remember(items)
    return time.perf_counter() - started


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95, p99 of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    return tuple(  # type: ignore[return-value]
        ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 for q in (0.5, 0.95, 0.99)
    )


async def timed(calls: Sequence[Callable[[], Awaitable[object]]], warmup: int = 10) -> list[float]:
    """Latency of each call, after ``warmup`` untimed ones."""
    for call in calls[:warmup]:
        await call()
    latencies = []
    for call in calls:
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    return latencies


@contextlib.asynccontextmanager
async def embedded_server(data_dir: Path | None = None) -> AsyncIterator[str]:
    """A private embedded PostgreSQL (a temporary one unless ``data_dir``, removed once the
    server has stopped); yields its DSN."""
    directory = data_dir or Path(tempfile.mkdtemp(prefix="pgrecall-bench-"))
    try:
        async with database_dsn(None, directory) as dsn:
            yield dsn
    finally:
        if data_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def database_url(dsn: str, name: str) -> str:
    """The DSN of database ``name`` on the server of ``dsn`` (an embedded server's DSN)."""
    return dsn.replace("/postgres?", f"/{name}?", 1)


async def fresh_database(dsn: str, name: str, migrated: bool = True) -> str:
    """Create database ``name`` (dropping an old one) on ``dsn``'s server; return its DSN."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    created = database_url(dsn, name)
    if migrated:
        await migrate.upgrade(created, DIMENSIONS)
    await settle(dsn)
    return created


async def settle(dsn: str) -> None:
    """Wait until no autovacuum worker is busy, then CHECKPOINT: the vacuum of the table a
    previous run filled took a core from the next run for seconds (8 s after a 100k COPY), and
    a checkpoint falling inside a run floods it with full-page images."""
    admin = await asyncpg.connect(dsn)
    try:
        for _ in range(int(SETTLE_SECONDS / SETTLE_POLL_SECONDS)):
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ):
                break
            await asyncio.sleep(SETTLE_POLL_SECONDS)
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()


def machine() -> str:
    """One line describing where the figures come from."""
    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cores} cores, {memory:.0f} GiB RAM"


def write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
