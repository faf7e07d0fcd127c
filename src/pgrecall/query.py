"""Recall: embed the query, then one SQL statement that scopes, filters and ranks.

The plan depends on how many memories the namespaces in scope hold. A global HNSW index with a
namespace filter returns almost nothing for a small namespace inside a large table (measured:
0.4 rows of 10), so:
- up to ``exact_scan_max_rows`` memories: the namespace btree, then an exact sort by inner
  product (``ORDER BY (embedding <#> q) + 0`` keeps the planner off the HNSW index). Exact.
- larger: the HNSW index with ``hnsw.iterative_scan = relaxed_order`` (it keeps scanning until
  enough rows pass the filter), a generous candidate list, then an exact re-sort.
``exact=True`` forces the exact plan at any size.

Namespace sizes are counted with a bounded query and cached for a few seconds per process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from pgrecall import validation
from pgrecall.config import Settings
from pgrecall.db.errors import database_errors
from pgrecall.embedding.base import Embedder
from pgrecall.errors import NotFoundError
from pgrecall.filters import SqlParams, compile_filter
from pgrecall.records import Hit, RecallResult
from pgrecall.spaces import SpaceRegistry

SIZE_CACHE_SECONDS = 10.0
# HNSW candidates fetched per wanted hit, before the exact re-sort.
CANDIDATE_FACTOR = 4

_COLUMNS = "id, namespace, content, metadata, key, created_at, expires_at"

_COUNT = """
    SELECT wanted.namespace,
           (SELECT count(*) FROM (SELECT 1 FROM memories m
                                  WHERE m.namespace = wanted.namespace LIMIT $2) bounded) AS n
    FROM unnest($1::text[]) AS wanted(namespace)
"""


class NamespaceSizes:
    """Bounded, cached counts of memories per namespace (enough to choose a plan)."""

    def __init__(self, pool: asyncpg.Pool, cap: int) -> None:
        self._pool = pool
        self._cap = cap
        self._cache: dict[str, tuple[float, int]] = {}

    def forget(self, namespaces: Sequence[str]) -> None:
        """Drop cached sizes after this process wrote to or deleted from these namespaces."""
        for name in namespaces:
            self._cache.pop(name, None)

    async def sizes(self, namespaces: Sequence[str]) -> dict[str, int]:
        """Memories per namespace, counted up to the cap (a namespace at the cap is large)."""
        now = time.monotonic()
        known = {
            name: entry[1]
            for name in namespaces
            if (entry := self._cache.get(name)) is not None and now - entry[0] < SIZE_CACHE_SECONDS
        }
        missing = [name for name in namespaces if name not in known]
        if missing:
            with database_errors():
                rows = await self._pool.fetch(_COUNT, missing, self._cap + 1)
            for row in rows:
                known[row["namespace"]] = row["n"]
                if row["n"]:  # an empty namespace may be written by another process any moment
                    self._cache[row["namespace"]] = (now, row["n"])
        return known


def _scope_sql(
    params: SqlParams,
    namespaces: str,
    space_id: int,
    filter_document: Mapping[str, Any] | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> str:
    conditions = [
        f"namespace = ANY({namespaces})",
        "embedding IS NOT NULL",
        f"space_id = {params.add(space_id, 'int')}",
        "(expires_at IS NULL OR expires_at > now())",
    ]
    if created_after is not None:
        conditions.append(f"created_at >= {params.add(created_after, 'timestamptz')}")
    if created_before is not None:
        conditions.append(f"created_at < {params.add(created_before, 'timestamptz')}")
    conditions.append(compile_filter(filter_document, params))
    return " AND ".join(conditions)


def _hit(row: asyncpg.Record) -> Hit:
    return Hit(
        id=row["id"],
        namespace=row["namespace"],
        content=row["content"],
        score=float(row["score"]),
        metadata=json.loads(row["metadata"]),
        key=row["key"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


class QueryService:
    """The ``recall`` path of the store."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        embedder: Embedder,
        spaces: SpaceRegistry,
        sizes: NamespaceSizes,
        settings: Settings,
    ) -> None:
        self._pool = pool
        self._embedder = embedder
        self._spaces = spaces
        self._sizes = sizes
        self._exact_max = settings.exact_scan_max_rows

    async def recall(
        self,
        query: str,
        namespaces: str | Sequence[str],
        *,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        min_score: float | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        exact: bool = False,
    ) -> RecallResult:
        """The ``k`` memories closest to ``query`` inside ``namespaces``, best first."""
        names = validation.namespaces(namespaces)
        k = validation.k(k)
        threshold = validation.min_score(min_score)
        text = validation.content(query, 10**6)
        after = validation.timestamp(created_after, "created_after")
        before = validation.timestamp(created_before, "created_before")
        params = SqlParams()
        # Compile the filter before any work, so a malformed one fails fast and costs nothing.
        compile_filter(filter, SqlParams())

        sizes = await self._sizes.sizes(names)
        unknown = [name for name in names if not sizes.get(name)]
        if unknown:
            raise NotFoundError(f"no memories in namespace {', '.join(map(repr, unknown))}")
        space_id = await self._spaces.require(self._embedder.space)
        if space_id is None:
            return RecallResult(hits=())
        vector = (await self._embedder.embed_queries([text])).vectors[0]

        use_exact = exact or sum(sizes.values()) <= self._exact_max
        q = params.add(vector, "vector")
        in_scope = params.add(names, "text[]")
        scope = _scope_sql(params, in_scope, space_id, filter, after, before)
        limit = params.add(k, "int")
        if use_exact:
            sql = f"""
                SELECT {_COLUMNS}, -(embedding <#> {q}) AS score FROM memories
                WHERE {scope}
                ORDER BY (embedding <#> {q}) + 0, id
                LIMIT {limit}
            """
        else:
            candidates = params.add(k * CANDIDATE_FACTOR, "int")
            sql = f"""
                WITH candidates AS MATERIALIZED (
                    SELECT {_COLUMNS}, embedding <#> {q} AS distance FROM memories
                    WHERE {scope}
                    ORDER BY embedding <#> {q}
                    LIMIT {candidates}
                )
                SELECT {_COLUMNS}, -distance AS score FROM candidates
                ORDER BY distance, id
                LIMIT {limit}
            """
        # Same round trip: how many memories in scope still wait for a vector.
        sql = f"""
            SELECT pending.n AS pending, hits.* FROM
                (SELECT count(*) AS n FROM memories
                 WHERE namespace = ANY({in_scope}) AND status = 'pending') AS pending
                LEFT JOIN LATERAL ({sql}) AS hits ON TRUE
            ORDER BY hits.score DESC NULLS LAST, hits.id
        """
        with database_errors():
            rows = await self._pool.fetch(sql, *params.values)
        pending = rows[0]["pending"] if rows else 0
        hits = tuple(_hit(row) for row in rows if row["id"] is not None)
        if threshold is not None:
            hits = tuple(hit for hit in hits if hit.score >= threshold)
        return RecallResult(hits=hits, exact=use_exact, pending=pending)
