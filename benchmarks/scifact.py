"""Recall quality on SciFact (../shared/eval/scifact) with the local model, per mode.

    python -m benchmarks.scifact [--tune] [--limit N] [--data-dir DIR]

Ingests the 5,183 abstracts into an embedded PostgreSQL (kept in --data-dir, so a second run
embeds nothing), then scores vector, keyword and hybrid recall with the eval folder's score.py:
hit@1/5/10, recall@10, MRR and nDCG@10, next to its pure-Python BM25 baseline. ``--tune`` first
searches the fusion (by score or by rank), its weights and depth on queries_train.jsonl; the
report is on queries.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.config import LOCAL_MODEL
from pgrecall.db.embedded import EmbeddedPostgres

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
DATASET = EVAL / "scifact"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "out" / "scifact-db"
NAMESPACE = "scifact"


def _score_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("score", EVAL / "score.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    with (DATASET / name).open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return rows[:limit] if limit else rows


async def ingest(store: MemoryStore, memories: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(memories), 500):
        batch = memories[start : start + 500]
        await store.remember(
            [MemoryInput(m["text"], key=m["id"], metadata={"doc": m["id"]}) for m in batch],
            namespace=NAMESPACE,
        )
    return time.perf_counter() - started


async def run(
    store: MemoryStore, queries: list[dict[str, Any]], **options: Any
) -> tuple[dict[str, list[str]], float]:
    ranked: dict[str, list[str]] = {}
    latencies = []
    for query in queries:
        started = time.perf_counter()
        hits = await store.recall(query["question"], namespace=NAMESPACE, k=50, **options)
        latencies.append(time.perf_counter() - started)
        ranked[query["id"]] = [hit.key or "" for hit in hits]
    latencies.sort()
    return ranked, latencies[len(latencies) // 2] * 1000


async def embedding_share(store: MemoryStore, queries: list[dict[str, Any]]) -> tuple[float, float]:
    """p50 of embedding a claim alone and of a whole recall (k=10, vector), in ms."""
    embed, whole = [], []
    for query in queries:
        started = time.perf_counter()
        await store.embedder.embed_queries([query["question"]])
        embed.append(time.perf_counter() - started)
        started = time.perf_counter()
        await store.recall(query["question"], namespace=NAMESPACE, mode="vector")
        whole.append(time.perf_counter() - started)
    return sorted(embed)[len(embed) // 2] * 1000, sorted(whole)[len(whole) // 2] * 1000


def _open(dsn: str, **overrides: Any) -> Any:
    return MemoryStore.open(load_settings(embedder="local", database_url=dsn, **overrides))


Ranked = list[tuple[str, float]]  # (key, score), best first


async def _rankings(
    store: MemoryStore, queries: list[dict[str, Any]]
) -> dict[str, tuple[Ranked, Ranked]]:
    lists = {}
    for query in queries:
        vector = await store.recall(query["question"], namespace=NAMESPACE, k=100, mode="vector")
        keyword = await store.recall(query["question"], namespace=NAMESPACE, k=100, mode="keyword")
        lists[query["id"]] = (
            [(h.key or "", h.score) for h in vector],
            [(h.key or "", h.score) for h in keyword],
        )
    return lists


def _standard(ranked: Ranked, floor: float) -> dict[str, float]:
    scores = [score for _, score in ranked]
    scale = statistics.pstdev(scores) if scores else 0.0
    scale = scale or (max(scores, default=floor) - floor) or 1.0
    return {key: (score - floor) / scale for key, score in ranked}


def _fuse(
    lists: dict[str, tuple[Ranked, Ranked]], fusion: str, rrf_k: float, weight: float, depth: int
) -> dict[str, list[str]]:
    """The fusion recall runs in SQL (recall/sql.py's ``fused``), over rankings fetched once."""
    run = {}
    for query_id, (vector, keyword) in lists.items():
        vector, keyword = vector[:depth], keyword[:depth]
        fused: dict[str, float] = {}
        if fusion == "rrf":
            for rank, (doc, _) in enumerate(vector, 1):
                fused[doc] = fused.get(doc, 0.0) + 1.0 / (rrf_k + rank)
            for rank, (doc, _) in enumerate(keyword, 1):
                fused[doc] = fused.get(doc, 0.0) + weight / (rrf_k + rank)
        else:
            floor = min((s for _, s in keyword), default=0.0) if len(keyword) >= depth else 0.0
            by_vector = _standard(vector, min((s for _, s in vector), default=0.0))
            by_keyword = _standard(keyword, floor)
            for doc in by_vector.keys() | by_keyword.keys():
                fused[doc] = by_vector.get(doc, 0.0) + weight * by_keyword.get(doc, 0.0)
        run[query_id] = sorted(fused, key=lambda doc: -fused[doc])[:50]
    return run


async def tune(dsn: str, score: ModuleType, queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Grid-search the fusion, its constant, the keyword weight and depth on the train claims."""
    async with await _open(dsn) as store:
        lists = await _rankings(store, queries)
    weights = (0.75, 0.85, 1.0, 1.25, 1.5, 2.0)
    grid = [
        *itertools.product(("rrf",), (2.0, 5.0, 10.0, 20.0, 60.0), weights, (50, 100)),
        *itertools.product(("scores",), (5.0,), weights, (50, 100)),
    ]
    scored = []
    for fusion, rrf_k, weight, depth in grid:
        run = _fuse(lists, fusion, rrf_k, weight, depth)
        ndcg = score.score(queries, run, [10])["ALL"]["ndcg@10"]
        config = {"hybrid_fusion": fusion, "keyword_weight": weight, "hybrid_depth": depth}
        scored.append((ndcg, config | ({"rrf_k": rrf_k} if fusion == "rrf" else {})))
    scored.sort(key=lambda item: -item[0])
    for ndcg, config in scored[:5]:
        print(f"  train nDCG@10 {ndcg:.4f}  {config}")
    print(f"best on train: {scored[0][1]} (nDCG@10 {scored[0][0]:.4f})")
    return scored[0][1]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="queries per set (smoke runs)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        help="keep only this many abstracts plus the gold ones of the queries used (smoke runs)",
    )
    arguments = parser.parse_args()
    arguments.data_dir.mkdir(parents=True, exist_ok=True)
    score = _score_module()
    memories = _load("memories.jsonl")
    if arguments.sample is not None:
        used = _load("queries.jsonl", arguments.limit) + (
            _load("queries_train.jsonl", arguments.limit) if arguments.tune else []
        )
        gold = {doc for query in used for doc in query["evidence"]}
        memories = [m for i, m in enumerate(memories) if i < arguments.sample or m["id"] in gold]
    server = EmbeddedPostgres(arguments.data_dir)
    dsn = await asyncio.to_thread(server.start)
    try:
        await report(dsn, arguments, score, memories)
    finally:
        await asyncio.to_thread(server.stop)


async def report(
    dsn: str, arguments: argparse.Namespace, score: ModuleType, memories: list[dict[str, Any]]
) -> None:
    async with await _open(dsn) as store:
        seconds = await ingest(store, memories)
        stats = await store.stats(namespace=NAMESPACE)
        assert stats.embedded == len(memories), stats
        print(
            f"ingest: {len(memories)} abstracts in {seconds:.1f} s "
            f"({len(memories) / seconds:.0f}/s; 0 embedded again on a re-run)"
        )
    config: dict[str, Any] = {}
    if arguments.tune:
        config = await tune(dsn, score, _load("queries_train.jsonl", arguments.limit))
    test = _load("queries.jsonl", arguments.limit)
    ks = [1, 5, 10, 50]
    settings = {k: v for k, v in config.items() if k != "keyword_weight"}
    weights = {k: v for k, v in config.items() if k == "keyword_weight"}
    rows = []
    async with await _open(dsn, **settings) as store:
        for mode in ("vector", "keyword", "hybrid"):
            ranked, p50 = await run(store, test, mode=mode, **(weights if mode == "hybrid" else {}))
            rows.append((mode, score.score(test, ranked, ks)["ALL"], p50))
        split = await embedding_share(store, test)
    bm25 = score.score(test, score.bm25_run(memories, test), ks)["ALL"]
    fusion = config or "defaults"
    print(f"\nSciFact test ({len(test)} claims), local {LOCAL_MODEL}, fusion {fusion}")
    header = (
        f"{'run':<22}{'hit@1':>8}{'hit@5':>8}{'hit@10':>8}{'R@10':>8}{'MRR':>8}"
        f"{'nDCG@10':>9}{'p50 ms':>8}"
    )
    print(header)
    for name, metrics, p50 in [*rows, ("BM25 (score.py)", bm25, float("nan"))]:
        print(
            f"{name:<22}{metrics['hit@1']:>8.3f}{metrics['hit@5']:>8.3f}{metrics['hit@10']:>8.3f}"
            f"{metrics['recall@10']:>8.3f}{metrics['mrr@50']:>8.3f}{metrics['ndcg@10']:>9.3f}"
            f"{p50:>8.1f}"
        )
    embed_ms, recall_ms = split
    print(
        f"\nrecall end to end (k=10, vector mode): p50 {recall_ms:.1f} ms, of which embedding the "
        f"claim {embed_ms:.1f} ms ({embed_ms / recall_ms:.0%}) and the database the rest"
    )


if __name__ == "__main__":
    asyncio.run(main())
