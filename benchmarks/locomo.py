"""Conversational recall on LoCoMo-dev (../shared/eval/locomo-dev) through the HTTP API.

    python -m benchmarks.locomo [--env benchmarks/locomo.env] [--set PGRECALL_X=value ...]

Ingests every conversation the way an agent would: one memory per dialogue turn, in order, in
the conversation's namespace, content = the turn's text, metadata ``speaker``, ``session_date``
(as given), ``session``, ``turn`` and ``image_caption`` when present, over ``POST /v1/memories``
of the real app served by uvicorn on loopback. Then asks every question in its namespace
(``POST /v1/recall``, k=20) and prints hit@1/5/10, recall@10 and MRR, overall and per category,
with the eval folder's score.py, and the recall p50 seen by the client.

Settings: the defaults, plus the lines of ``--env`` (``PGRECALL_*=value``, the value taken
literally, as a user's environment would hold it), plus ``--set`` (for trying a lever). The
data is evaluation data under CC BY-NC 4.0: it is read from ../shared, never copied here.

The model's vectors are cached in ``out/locomo-vectors.npz`` keyed by model and exact text, so
a re-run embeds only what changed; ``--no-cache`` embeds everything live (the p50 then includes
embedding the question).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
from tests.http_server import serving

from benchmarks.common import OUT
from pgrecall import MemoryStore, load_settings
from pgrecall.config import Settings
from pgrecall.db.embedded import EmbeddedPostgres
from pgrecall.embedding.base import BatchOutput
from pgrecall.embedding.local import LocalEmbedder
from pgrecall.embedding.space import configured_space
from pgrecall.http.app import create_app

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
DATASET = EVAL / "locomo-dev"
CACHE = OUT / "locomo-vectors.npz"
K = 20
PER_REQUEST = 200  # turns per POST: a session or two, as an agent would write them
METADATA_FIELDS = ("speaker", "session_date", "session", "turn", "image_caption")


class CachedLocalEmbedder(LocalEmbedder):
    """The local model, with its vectors kept on disk by model and exact (prefixed) text."""

    def __init__(self, settings: Settings, *, cached: bool) -> None:
        super().__init__(configured_space(settings))
        self._vectors: dict[str, np.ndarray] = {}
        self._model_name = f"{self.space.model}:{self.space.embedder_version}"
        self.cached = cached
        if cached and CACHE.exists():
            with np.load(CACHE) as stored:
                self._vectors = {key: stored[key] for key in stored.files}
        self.added = 0

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._model_name}\0{text}".encode()).hexdigest()

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        keys = [self._key(text) for text in texts]
        missing = [i for i, key in enumerate(keys) if key not in self._vectors]
        truncated = 0
        if missing:
            output = await super()._embed_batch([texts[i] for i in missing])
            truncated = output.truncated
            for i, vector in zip(missing, output.vectors, strict=True):
                self._vectors[keys[i]] = np.asarray(vector, dtype=np.float32)
            self.added += len(missing)
        return BatchOutput([self._vectors[key].tolist() for key in keys], truncated=truncated)

    def save(self) -> None:
        """Write the cache back when anything was added."""
        if self.cached and self.added:
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            if CACHE.exists():  # another run may have added vectors meanwhile: keep them
                with np.load(CACHE) as stored:
                    self._vectors = {key: stored[key] for key in stored.files} | self._vectors
            partial = CACHE.with_suffix(f".{os.getpid()}.part")
            with partial.open("wb") as out:
                np.savez(out, **self._vectors)
            partial.replace(CACHE)  # whole or not at all, whatever runs at once


def _score_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("score", EVAL / "score.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {EVAL / 'score.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str) -> list[dict[str, Any]]:
    with (DATASET / name).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def read_env_file(path: Path) -> dict[str, str]:
    """``PGRECALL_*=value`` lines (blank lines and ``#`` comments skipped), values literal."""
    settings = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.startswith("PGRECALL_"):
            raise SystemExit(f"{path}:{number}: expected PGRECALL_NAME=value")
        settings[name] = value
    return settings


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Only ``values`` among the PGRECALL_* variables while the store is configured."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PGRECALL_")}
    for name in saved:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        for name in values:
            os.environ.pop(name, None)
        os.environ.update(saved)


def turn_id(conversation: str, metadata: dict[str, Any]) -> str:
    """The dataset's id of a turn, from what was stored with it."""
    return f"{conversation}:D{metadata['session']}:{metadata['turn']}"


def memory_payload(turn: dict[str, Any]) -> dict[str, Any]:
    """A turn as a user would store it: its text, and who said it when as metadata."""
    metadata = {field: turn[field] for field in METADATA_FIELDS if field in turn}
    return {"namespace": turn["conversation"], "content": turn["text"], "metadata": metadata}


async def ingest(client: httpx.AsyncClient, turns: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(turns), PER_REQUEST):
        batch = [memory_payload(turn) for turn in turns[start : start + PER_REQUEST]]
        response = await client.post("/v1/memories", json={"memories": batch})
        response.raise_for_status()
        states = {item["status"] for item in response.json()["memories"]}
        if states != {"embedded"}:
            raise SystemExit(f"ingest left memories {states}")
    return time.perf_counter() - started


async def ask(
    client: httpx.AsyncClient, queries: list[dict[str, Any]], **options: float | int
) -> tuple[dict[str, list[str]], list[float]]:
    ranked: dict[str, list[str]] = {}
    latencies = []
    for query in queries:
        body = {"query": query["question"], "namespaces": [query["conversation"]], "k": K}
        body.update(options)
        started = time.perf_counter()
        response = await client.post("/v1/recall", json=body)
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
        hits = response.json()["hits"]
        ranked[query["id"]] = [turn_id(query["conversation"], hit["metadata"]) for hit in hits]
    return ranked, latencies


@contextlib.asynccontextmanager
async def served(settings: Settings, embedder: CachedLocalEmbedder) -> AsyncIterator[str]:
    """The app over a store on ``settings`` with ``embedder``, served on loopback."""
    async with (
        await MemoryStore.open(settings, embedder=embedder) as store,
        serving(create_app(settings, store=store)) as url,
    ):
        yield url


def report(score: ModuleType, queries: list[dict[str, Any]], ranked: dict[str, list[str]]) -> None:
    names = {str(q["category"]): q["category_name"] for q in queries}
    results = score.score(queries, ranked, [1, 5, 10])
    print(f"{'category':<14}{'n':>5}{'hit@1':>8}{'hit@5':>8}{'hit@10':>8}{'R@10':>8}{'MRR':>8}")
    counts = defaultdict(int, {"ALL": len(queries)})
    for query in queries:
        counts[str(query["category"])] += 1
    for key, metrics in sorted(results.items(), key=lambda item: item[0] != "ALL"):
        print(
            f"{names.get(key, key):<14}{counts[key]:>5}{metrics['hit@1']:>8.3f}"
            f"{metrics['hit@5']:>8.3f}{metrics['hit@10']:>8.3f}{metrics['recall@10']:>8.3f}"
            f"{metrics['mrr@10']:>8.3f}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", type=Path, default=None, help="settings file (PGRECALL_*=v)")
    parser.add_argument("--set", action="append", default=[], metavar="PGRECALL_X=value")
    parser.add_argument("--conversations", type=int, default=None, help="first N (smoke runs)")
    parser.add_argument("--questions", type=int, default=None, help="first N per conversation")
    parser.add_argument(
        "--weights",
        nargs="*",
        default=[],
        metavar="V,K",
        help="also score these per-call fusion weights (vector,keyword) on the same memories",
    )
    parser.add_argument(
        "--neighbours",
        nargs="*",
        type=int,
        default=[],
        metavar="N",
        help="also score recall with each hit's N neighbours in its thread, within k=10",
    )
    parser.add_argument("--no-cache", action="store_true", help="embed everything live")
    parser.add_argument("--run", type=Path, default=None, help="write the ranked ids (JSONL)")
    arguments = parser.parse_args()
    values = read_env_file(arguments.env) if arguments.env else {}
    for item in arguments.set:
        name, _, value = item.partition("=")
        values[name] = value
    turns, queries = _load("memories.jsonl"), _load("queries.jsonl")
    conversations = sorted({turn["conversation"] for turn in turns})[: arguments.conversations]
    turns = [turn for turn in turns if turn["conversation"] in conversations]
    per_conversation: dict[str, int] = defaultdict(int)
    kept = []
    for query in queries:
        if query["conversation"] in conversations:
            per_conversation[query["conversation"]] += 1
            if arguments.questions is None or per_conversation[query["conversation"]] <= (
                arguments.questions
            ):
                kept.append(query)
    queries = kept
    with environment({**values, "PGRECALL_EMBEDDER": "local"}):
        settings = load_settings()
    embedder = CachedLocalEmbedder(settings, cached=not arguments.no_cache)
    with tempfile.TemporaryDirectory(prefix="locomo-", dir=OUT if OUT.exists() else None) as tmp:
        server = EmbeddedPostgres(Path(tmp))
        dsn = await asyncio.to_thread(server.start)
        try:
            settings = settings.model_copy(update={"database_url": dsn, "worker": False})
            async with (
                served(settings, embedder) as url,
                httpx.AsyncClient(base_url=url, timeout=600) as client,
            ):
                seconds = await ingest(client, turns)
                ranked, latencies = await ask(client, queries)
                trials = [
                    (pair, (await ask(client, queries, **_weights(pair)))[0])
                    for pair in arguments.weights
                ]
                around = [
                    (count, (await ask(client, queries, k=10, neighbours=count))[0])
                    for count in arguments.neighbours
                ]
        finally:
            await asyncio.to_thread(server.stop)
    embedder.save()
    if arguments.run:
        with arguments.run.open("w", encoding="utf-8") as out:
            for query_id, ids in ranked.items():
                out.write(json.dumps({"id": query_id, "ranked": ids}) + "\n")
    shown = " ".join(f"{k}={v}" for k, v in sorted(values.items())) or "defaults"
    print(f"LoCoMo-dev: {len(turns)} turns, {len(queries)} questions; settings: {shown}")
    print(f"ingest over HTTP: {seconds:.1f} s ({embedder.added} texts embedded, rest cached)")
    report(_score_module(), queries, ranked)
    p50 = statistics.median(latencies) * 1000
    where = "model live" if arguments.no_cache else "question vectors cached"
    print(f"recall p50 over HTTP: {p50:.1f} ms ({where})")
    score = _score_module()
    for pair, trial in trials:
        metrics = score.score(queries, trial, [10])["ALL"]
        print(f"per-call weights vector,keyword={pair}: hit@10 {metrics['hit@10']:.3f}")
    for count, trial in around:
        metrics = score.score(queries, trial, [5, 10])["ALL"]
        print(
            f"k=10 with neighbours={count}: hit@10 {metrics['hit@10']:.3f}, "
            f"hit@5 {metrics['hit@5']:.3f}, MRR {metrics['mrr@10']:.3f}"
        )


def _weights(pair: str) -> dict[str, float]:
    vector, _, keyword = pair.partition(",")
    return {"vector_weight": float(vector), "keyword_weight": float(keyword)}


if __name__ == "__main__":
    asyncio.run(main())
