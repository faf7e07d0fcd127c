"""Is PostgreSQL's ts_rank enough for the keyword side? ts_rank / ts_rank_cd against BM25.

    python -m benchmarks.keyword_ranking   (after benchmarks.scifact has filled its database)

Same candidates (any query word matches), same SciFact test claims; only the ranking differs.
ts_rank has no inverse document frequency, so a frequent word counts as much as a rare one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from benchmarks.scifact import DEFAULT_DATA_DIR, NAMESPACE, _load, _score_module
from pgrecall import MemoryStore, load_settings
from pgrecall.db.embedded import EmbeddedPostgres

_TS_RANK = """
    WITH q AS (
        SELECT (SELECT string_agg('''' || lexeme || '''', ' | ')
                FROM unnest(tsvector_to_array(to_tsvector(pgrecall_text_config(), $1))) lexeme
               )::tsquery AS tsq
    )
    SELECT m.key FROM memories m, q
    WHERE m.namespace = $2 AND m.search @@ q.tsq
    ORDER BY {rank}(m.search, q.tsq{normalisation}) DESC, m.id LIMIT 50
"""


async def main() -> None:
    score = _score_module()
    test = _load("queries.jsonl")
    server = EmbeddedPostgres(DEFAULT_DATA_DIR)
    dsn = server.start()
    try:
        connection = await asyncpg.connect(dsn)
        runs: dict[str, dict[str, list[str]]] = {}
        for rank, normalisation in (("ts_rank", ""), ("ts_rank", ", 1"), ("ts_rank_cd", ", 1")):
            sql = _TS_RANK.format(rank=rank, normalisation=normalisation)
            name = f"{rank}{' (length-normalised)' if normalisation else ''}"
            runs[name] = {
                q["id"]: [r["key"] for r in await connection.fetch(sql, q["question"], NAMESPACE)]
                for q in test
            }
        await connection.close()
        settings = load_settings(embedder="local", database_url=dsn, worker=False)
        async with await MemoryStore.open(settings) as store:
            bm25: dict[str, list[str]] = {}
            for q in test:
                hits = await store.recall(q["question"], namespace=NAMESPACE, k=50, mode="keyword")
                bm25[q["id"]] = [h.key or "" for h in hits]
            runs["BM25 (pgrecall keyword mode)"] = bm25
    finally:
        server.stop()
    print(f"keyword rankings on SciFact test ({len(test)} claims)")
    for name, ranked in runs.items():
        metrics: dict[str, Any] = score.score(test, ranked, [1, 10])["ALL"]
        print(f"  {name:<32} nDCG@10 {metrics['ndcg@10']:.3f}  hit@10 {metrics['hit@10']:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
