"""Recall: embed the query, then one SQL statement that scopes, filters, ranks and fuses.

Modes: ``vector`` (inner product), ``keyword`` (BM25 over the tsvector, needs no embedder) and
``hybrid`` (default: both fused by score or by rank, ``recall.sql.fused``; the fusion, weights
and depth in settings). In hybrid
mode a transient embedder failure falls back to keywords (``degraded=True``) instead of failing.

The plan depends on how many memories each namespace in scope holds. A graph index with a
namespace filter returns almost nothing for a small namespace inside a large table (measured:
0.4 rows of 10), so:
- no namespace above ``exact_scan_max_rows`` memories: the namespace btree, then an exact sort
  by inner product (sorting a subquery's output keeps the planner off the HNSW index).
- a larger one: the partial HNSW index, which holds the rows of large namespaces (indexer.py),
  with ``hnsw.iterative_scan = relaxed_order`` (it keeps scanning until enough rows pass the
  filter) and a generous candidate list, merged with an exact sort of the scope's rows not in
  the graph yet, then an exact re-sort.
``exact=True`` forces the exact plan at any size.

Keyword ranking (BM25) of a namespace of ``keyword_postings_min_rows`` memories or more reads
the postings of the query's lexemes (``memory_terms``, written by the worker in the background)
instead of every matching row's tsvector (``recall.sql.keyword_postings``), and by default scores
them in Python (``recall.bm25``, ``_fetch_scored``): one statement fetches them, one reads the
winners.

The exact scan of one namespace of ``vector_copy_min_rows`` memories or more reads copies of
its vectors (``memory_vectors``, written by the worker in the background) instead of the
memories' long rows (``recall.sql.copied_nearest``).

A hybrid recall running alone (``recall.split.SplitGate``) runs its two rankings at once on two
connections, then fuses them in a third statement (``_fetch_split``); under load, one statement.

Namespace sizes are counted with a bounded query and cached for a few seconds (``sizes``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from pgrecall import validation
from pgrecall.config import FUSION_WEIGHT_RANGE, Settings, fusion_weight_allowed
from pgrecall.db.errors import database_errors
from pgrecall.db.params import SqlParams
from pgrecall.db.plan_cache import custom_plans, generic_plans
from pgrecall.db.rows import from_row
from pgrecall.embedding.base import Embedder
from pgrecall.embedding.coalesce import QueryCoalescer
from pgrecall.embedding.guard import SpaceRegistry
from pgrecall.embedding.health import EmbedderHealth
from pgrecall.errors import EmbeddingError, InvalidInputError, NotFoundError
from pgrecall.offload import off_loop
from pgrecall.recall import bm25
from pgrecall.recall.filters import compile_filter
from pgrecall.recall.keyword_cache import KeywordCache, Postings
from pgrecall.recall.modes import MODE_RANKINGS
from pgrecall.recall.neighbours import with_neighbours
from pgrecall.recall.plans import GenericPlanGate
from pgrecall.recall.rerank import check_boosts, needs_candidates, rerank
from pgrecall.recall.sizes import NamespaceSizes
from pgrecall.recall.split import (
    SplitGate,
    alongside,
    fused_statement,
    given_ranking,
    ranking_statement,
)
from pgrecall.recall.sql import (
    CachedCandidates,
    Fusion,
    current_memories,
    fused,
    fused_hits,
    keyword_ranking,
    proven_ranking,
    query_terms,
    recall_scope,
    row_limit,
    statement,
    vector_hits,
    vector_ranking,
)
from pgrecall.recall.vector_cache import Candidates, VectorCache, candidate_count
from pgrecall.records import Hit, Mode, RecallOptions, RecallResult

# HNSW candidates fetched per wanted hit, before the exact re-sort.
CANDIDATE_FACTOR = 4


def _hit(row: asyncpg.Record) -> Hit:
    return from_row(Hit, row, score=float(row["score"]), metadata=json.loads(row["metadata"]))


def _ranked_hits(rows: list[asyncpg.Record], options: RecallOptions) -> list[Hit]:
    """The hits of the fetched rows, above ``min_score``, re-ranked as the options ask."""
    kept = [
        row
        for row in rows
        if row["id"] is not None
        and (
            options.min_score is None
            or (row["vector_score"] is not None and row["vector_score"] >= options.min_score)
        )
    ]
    return rerank([_hit(row) for row in kept], [row["embedding"] for row in kept], options)


def _check(options: RecallOptions) -> None:
    validation.k(options.k)
    validation.min_score(options.min_score)
    validation.check_timestamp(options.created_after, "created_after")
    validation.check_timestamp(options.created_before, "created_before")
    validation.check_timestamp(options.as_of, "as_of")
    validation.check_timestamp(options.valid_at, "valid_at")
    if not isinstance(options.include_invalid, bool):
        raise InvalidInputError("include_invalid is true or false")
    if options.mode not in MODE_RANKINGS:
        raise InvalidInputError(f"mode must be one of {', '.join(MODE_RANKINGS)}")
    if options.mode == "keyword" and options.min_score is not None:
        raise InvalidInputError("min_score bounds vector similarity: not in keyword mode")
    for name in ("vector_weight", "keyword_weight"):
        value = getattr(options, name)
        if value is not None and not fusion_weight_allowed(value):
            raise InvalidInputError(f"{name} {FUSION_WEIGHT_RANGE}")
    check_boosts(options.diversity, options.recency_half_life)
    validation.neighbours(options.neighbours)
    if options.neighbours and options.as_of is not None:
        raise InvalidInputError("neighbours are current memories: not with as_of")
    # Compile the filter before any work, so a malformed one fails fast and costs nothing.
    compile_filter(options.filter, SqlParams())


class QueryService:
    """The ``recall`` path of the store."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        embedder: Embedder,
        spaces: SpaceRegistry,
        sizes: NamespaceSizes,
        settings: Settings,
        health: EmbedderHealth | None = None,
    ) -> None:
        self._pool = pool
        self._embedder = embedder
        self._queries = QueryCoalescer(
            embedder,
            wait_seconds=settings.query_batch_wait_ms / 1000,
            max_batch=settings.embed_batch_size,
        )
        self._spaces = spaces
        self._sizes = sizes
        self._settings = settings
        # Shared with ingestion and the worker in a store, so an outage is told once.
        self._health = health or EmbedderHealth()
        self._split = SplitGate(pool, settings.hybrid_split)
        self._plans = GenericPlanGate(pool, settings.exact_scan_max_rows)
        self._vectors = VectorCache(pool, settings.vector_cache_mb * 2**20)
        self._keywords = KeywordCache(pool, settings.keyword_cache_mb * 2**20)

    async def aclose(self) -> None:
        """Stop the caches' loads in flight (before the pool closes)."""
        await self._vectors.aclose()
        await self._keywords.aclose()

    async def recall(
        self, query: str, namespaces: str | Sequence[str], options: RecallOptions
    ) -> RecallResult:
        """The ``k`` best memories for ``query`` inside ``namespaces``, best first."""
        with self._split.recall():
            return await self._recall(query, namespaces, options)

    async def _recall(
        self, query: str, namespaces: str | Sequence[str], options: RecallOptions
    ) -> RecallResult:
        names = validation.namespaces(namespaces)
        text = validation.query(query)
        _check(options)
        # Generic plans fit the namespaces' statistics (recall/plans.py): the bounded counts,
        # one namespace each, run so too, so a connection is not set back to PostgreSQL's
        # choice between them and the recall's statement (a round trip each way).
        fits = await self._plans.open()
        with generic_plans() if fits else contextlib.nullcontext():
            sizes = await self._sizes.sizes(names)
        unknown = [name for name in names if not sizes.get(name)]
        if unknown:
            raise NotFoundError(f"no memories in namespace {', '.join(map(repr, unknown))}")

        mode = options.mode
        vector: list[float] | None = None
        space_id: int | None = None
        degraded = False
        rankings = MODE_RANKINGS[mode]
        if rankings.vector:
            space_id = await self._spaces.require(self._embedder.space)
            try:
                vector = await self._queries.embed(text)
            except EmbeddingError as exc:
                if exc.transient:
                    self._health.mark_down(str(exc))
                if rankings.without_vector is None or not exc.transient:
                    raise
                mode, degraded = rankings.without_vector, True  # keywords still work
            else:
                self._health.mark_up()
            if space_id is None and not degraded:  # no vector stored yet
                if rankings.without_vector is None:
                    return RecallResult(hits=(), mode=mode)
                mode = rankings.without_vector
        # Only large namespaces have rows in the graph (indexer.py): without one, it is no help;
        # nor for past versions, which are never in it.
        exact = (
            options.exact
            or options.as_of is not None
            or max(sizes.values()) <= self._settings.exact_scan_max_rows
        )
        largest = max(sizes.values())
        postings = self._reaches(largest, self._settings.keyword_postings_min_rows)
        plan = "hnsw"
        if exact:
            plan = "copied" if self._copied(names, largest, options) else "exact"
        # One small namespace: its statements are written to settle on generic plans
        # (``_fetch``), and run so from the first call, never tipped into planning each one.
        generic = (
            exact and len(names) == 1 and largest <= self._settings.exact_scan_max_rows and fits
        )
        with generic_plans() if generic else contextlib.nullcontext():
            rows = await self._fetch(
                text, names, vector, space_id, mode, options, plan=plan, postings=postings
            )
        pending = rows[0]["pending"] if rows else 0
        # Off the loop when large: MMR over 100 candidates (the fewest a diverse recall
        # fetches by default) took 1-4 ms, decoding 1,000 rows' metadata up to 0.3 s.
        hits = await off_loop(len(rows), lambda: _ranked_hits(rows, options))
        hits = hits[: options.k]
        neighbours = _neighbours(options, self._settings)
        if neighbours and self._settings.context_key:
            hits = await with_neighbours(
                self._pool, hits, self._settings.context_key, neighbours, options
            )
        return RecallResult(
            hits=tuple(hits),
            exact=exact,
            pending=pending,
            mode=mode,
            degraded=degraded,
        )

    async def _candidates(
        self,
        names: list[str],
        vector: list[float] | None,
        space_id: int | None,
        plan: str,
        depth: int,
        *,
        beside: bool = False,
    ) -> Candidates | None:
        """The cached copies a copied plan's ranking of ``depth`` rows is given
        (``recall.vector_cache``), or None: not the copied plan, or the namespace not cached
        (yet); ranked in a worker thread when ``beside`` other work."""
        if plan != "copied" or vector is None or space_id is None:
            return None
        return await self._vectors.candidates(
            names[0], space_id, vector, candidate_count(depth), beside=beside
        )

    def _copied(self, names: list[str], largest: int, options: RecallOptions) -> bool:
        """Whether the exact scan reads the vector copies (``recall.sql.copied_nearest``): one
        namespace large enough to have them, its current memories in scope
        (``recall.sql.current_memories``: those out of scope are an exclusion set, where a
        metadata filter, created range or past validity would need each candidate's row; past
        versions have no copies)."""
        return current_memories(names, options) and self._reaches(
            largest, self._settings.vector_copy_min_rows
        )

    def _reaches(self, largest: int, minimum: int) -> bool:
        """Whether a namespace of ``largest`` memories is at least ``minimum``. Sizes are
        counted up to the exact-scan limit only (``NamespaceSizes``), so a namespace above that
        limit reaches every minimum."""
        return largest >= minimum or largest > self._settings.exact_scan_max_rows

    async def _fetch(
        self,
        text: str,
        names: list[str],
        vector: list[float] | None,
        space_id: int | None,
        mode: Mode,
        options: RecallOptions,
        *,
        plan: str,
        postings: bool,
    ) -> list[asyncpg.Record]:
        """The rows of the recall's statement: the vector ranking's ``plan`` ("exact",
        "copied" or "hnsw", ``recall.sql.nearest``; the copied plan given the process's cached
        candidates when it has them and they prove the answer), BM25 from the keyword
        ``postings`` or from every matching tsvector. A hybrid recall running alone splits
        (``_fetch_split``)."""
        settings = self._settings
        exact = plan != "hnsw"
        shape = _Shape.of(options, settings, exact)
        rankings = MODE_RANKINGS[mode]
        split = False
        if vector is not None and space_id is not None and rankings.vector:
            split = rankings.keyword and self._split.open()
        else:
            vector = None
        # Past versions have no postings of their own: their BM25 stays the SQL plan's.
        if (
            rankings.keyword
            and postings
            and settings.keyword_scoring == "python"
            and options.as_of is None
        ):
            return await self._fetch_scored(
                text, names, vector, space_id, options, shape, plan=plan, split=split
            )
        if split and vector is not None and space_id is not None:
            return await self._fetch_split(
                text,
                names,
                vector,
                space_id,
                options,
                shape,
                plan=plan,
                postings=postings,
            )
        rows, proven = await self._fetch_one(
            text, names, vector, space_id, mode, options, shape, plan=plan, postings=postings
        )
        if not proven and space_id is not None:
            self._vectors.unproven(names[0], space_id)
            rows, _ = await self._fetch_one(
                text,
                names,
                vector,
                space_id,
                mode,
                options,
                shape,
                plan=plan,
                postings=postings,
                cache=False,
            )
        return rows

    async def _fetch_one(
        self,
        text: str,
        names: list[str],
        vector: list[float] | None,
        space_id: int | None,
        mode: Mode,
        options: RecallOptions,
        shape: _Shape,
        *,
        plan: str,
        postings: bool,
        cache: bool = True,
    ) -> tuple[list[asyncpg.Record], bool]:
        """The rows of the recall as one statement (``_fetch``'s), and whether they are proven:
        false when the cached plan's candidates (``cache``) could not prove its vector ranking
        (``vector_cache.Candidates.certified``)."""
        settings = self._settings
        rankings = MODE_RANKINGS[mode]
        embedding = shape.embedding
        exact = shape.exact
        params = SqlParams()
        # Inside small namespaces the statement can settle on one generic plan: the LIMITs are
        # written out and one namespace is compared with "=", so a generic plan costs what a
        # custom one does (it takes a namespace for an average one, small too) as long as the
        # namespaces are of like sizes; beside much larger ones PostgreSQL keeps planning each
        # call, for its statistics put the average above a small namespace. With a large
        # namespace in scope they stay bound and "= ANY", so that even a generic plan walks the
        # graph: with them written out, a generic plan took a 100k namespace for an average one
        # and sorted it exactly (100 ms a recall).
        scope = recall_scope(params, names, options, generic=exact)
        limit = shape.rows(params, shape.wanted)
        query = space = None
        dimensions = 0  # the query's size: the graph's expression casts to it (sql.nearest)
        if vector is not None and space_id is not None:
            dimensions = len(vector)
            query = params.add(vector, "vector")
            space = params.add(space_id, "int")
        ctes: list[str] = []
        candidates = cached = None
        proof = ""  # the columns the cached plan's proof reads, with a vector ranking
        if not rankings.keyword and query is not None and space is not None:
            depth = shape.candidates
            if cache:
                candidates = await self._candidates(names, vector, space_id, plan, depth)
            if candidates is not None:
                cached = self._cached(params, candidates)
            size = shape.rows(params, depth)
            hits = vector_hits(
                scope,
                query,
                space,
                size,
                "cached" if cached else plan,
                limit,
                embedding,
                dimensions,
                cached,
            )
        else:
            ctes.extend(query_terms(params.add(text, "text")))
            vector_ranked = None
            if query is not None and space is not None:
                if cache:
                    candidates = await self._candidates(
                        names, vector, space_id, plan, shape.vector_depth
                    )
                if candidates is not None:
                    cached = self._cached(params, candidates)
                size = shape.rows(params, shape.vector_depth)
                vector_ranked = vector_ranking(
                    scope, query, space, size, "cached" if cached else plan, dimensions, cached
                )
                if cached is not None:
                    vector_ranked, proof = proven_ranking(vector_ranked)
                    ctes.extend(vector_ranked.ctes)
            keyword_depth = shape.rows(params, shape.depth if vector_ranked else shape.wanted)
            keyword_ranked = keyword_ranking(
                params,
                scope,
                keyword_depth,
                settings.bm25_k1,
                settings.bm25_b,
                postings=postings,
            )
            ctes.extend(keyword_ranked.ctes)
            fusion = None
            if vector_ranked is not None:
                fusion = self._fusion(params, options, keyword_depth)
            ranking = fused(vector_ranked, keyword_ranked, fusion)
            hits = fused_hits(scope, ranking, query, limit, embedding)
        sql = statement(ctes, scope, hits, columns=proof)
        with database_errors():
            rows = list(await self._pool.fetch(sql, *params.values))
        if candidates is None:
            return rows, True
        if proof:
            depth, found, farthest = (
                shape.vector_depth,
                rows[0]["vector_found"],
                rows[0]["vector_farthest"],
            )
        else:  # vector mode: the hits are the ranking
            nearest = [-row["vector_score"] for row in rows if row["id"] is not None]
            depth, found, farthest = shape.candidates, len(nearest), (nearest or [None])[-1]
        return rows, candidates.certified(found, farthest, depth)

    async def _fetch_scored(
        self,
        text: str,
        names: list[str],
        vector: list[float] | None,
        space_id: int | None,
        options: RecallOptions,
        shape: _Shape,
        *,
        plan: str,
        split: bool,
        cache: bool = True,
    ) -> list[asyncpg.Record]:
        """The rows of a keyword or hybrid recall as ``_fetch`` gives them, BM25 scored in
        Python (recall/bm25.py): the query's postings by one statement (at once with the vector
        ranking's when the hybrid recall ``split``s), scored, then one statement that checks the
        scope on the best in score order, fuses them with the vector ranking (computed there,
        or the one fetched) and reads the winners. On SciFact the keyword statement's round trip
        took 0.66x the SQL plan's (benchmarks/RESULTS.md, issue 25).

        With the namespace's copies cached (and ``cache``), the vector ranking is the cached
        plan's (``recall.vector_cache``): split, its own statement, sent once numpy has ranked
        the copies while the postings statement runs (``_split_rankings``); otherwise part of
        the winners' statement, whose answer the recall runs again on the copied plan when it
        is not proven. With the namespace's postings cached (``recall.keyword_cache``), the
        postings statement returns only what the cache lacks, and numpy scores the rest."""
        cached = self._keywords.postings(names[0]) if len(names) == 1 else None
        postings_sql, postings_values = self._postings_statement(text, names, shape, cached)
        vector_rows = nearest = None
        scored: bm25.Scored | None = None
        with database_errors():
            # The split pays off while the postings statement is long: with the postings
            # cached it is a fraction of a millisecond, and with the copies ranked in the
            # process too the split's extra round trip and rankings bound as arrays cost more
            # than it saves (SciFact hybrid 1.09x).
            if cached is not None and plan == "copied":
                split = False
            if split and vector is not None and space_id is not None:
                postings, vector_rows = await self._split_rankings(
                    self._pool.fetch(postings_sql, *postings_values),
                    self._pool.fetch,
                    names,
                    vector,
                    space_id,
                    options,
                    shape,
                    plan,
                    cache=cache,
                )
            else:
                # numpy ranks the cached copies in a worker thread (it lets go of the GIL) while
                # the postings statement runs and BM25 is scored here.
                async def nearest_cached() -> Candidates | None:
                    if vector is None or not cache:
                        return None
                    return await self._candidates(
                        names, vector, space_id, plan, shape.vector_depth, beside=True
                    )

                async def postings_scored() -> tuple[list[asyncpg.Record], bm25.Scored]:
                    found = await self._pool.fetch(postings_sql, *postings_values)
                    return found, await self._bm25(found, cached, text, names, shape)

                nearest, (postings, scored) = await alongside(nearest_cached(), postings_scored)
        if scored is None:
            scored = await self._bm25(postings, cached, text, names, shape)
        depth = shape.depth if vector is not None else shape.wanted
        candidates = bm25.CANDIDATES_PER_ROW * depth
        rows = await self._fetch_winners(
            scored.top(candidates),
            names,
            vector,
            space_id,
            vector_rows,
            options,
            shape,
            plan,
            nearest=nearest,
        )
        if rows[0]["checked"] < depth and candidates < len(scored):
            rows = await self._fetch_winners(
                scored.top(len(scored)),
                names,
                vector,
                space_id,
                vector_rows,
                options,
                shape,
                plan,
                whole=True,
                nearest=nearest,
            )
        if nearest is not None and space_id is not None:
            found, farthest = rows[0]["vector_found"], rows[0]["vector_farthest"]
            if not nearest.certified(found, farthest, shape.vector_depth):
                self._vectors.unproven(names[0], space_id)
                return await self._fetch_scored(
                    text,
                    names,
                    vector,
                    space_id,
                    options,
                    shape,
                    plan=plan,
                    split=split,
                    cache=False,
                )
        return rows

    @staticmethod
    def _postings_statement(
        text: str, names: list[str], shape: _Shape, cached: Postings | None
    ) -> tuple[str, list[object]]:
        """The statement of the query's postings (``bm25.postings_statement``), or of what the
        ``cached`` postings of the namespace lack (``bm25.postings_since_statement``), and its
        values."""
        params = SqlParams()
        scope = bm25.namespaces_scope(params, names, generic=shape.exact)
        query = params.add(text, "text")
        if cached is None:
            return bm25.postings_statement(scope, query), params.values
        snapshot = params.add(cached.snapshot, "text")
        return bm25.postings_since_statement(scope, query, snapshot), params.values

    async def _bm25(
        self,
        rows: list[asyncpg.Record],
        cached: Postings | None,
        text: str,
        names: list[str],
        shape: _Shape,
    ) -> bm25.Scored:
        """BM25 of the memories sharing a lexeme with the query: from the ``cached`` postings
        and the ``rows`` of what they lack, unless postings were dropped since the cache read
        them (the recall then reads its postings whole); else from the ``rows``, its
        postings. Off the loop when large (a thousand postings an item: ~0.25 ms)."""
        k1, b = self._settings.bm25_k1, self._settings.bm25_b
        if cached is not None and rows[0]["dropped"] == cached.dropped:
            lexemes = rows[0]["lexemes"] or []
            read = cached.read(lexemes) + bm25.postings_read(
                [row for row in rows if row["lexeme"] is not None]
            )
            return await off_loop(read // 1000, lambda: cached.ranked(names[0], rows, k1, b))
        if cached is not None:
            self._keywords.outdated(names[0])
            sql, values = self._postings_statement(text, names, shape, None)
            with database_errors():
                rows = await self._pool.fetch(sql, *values)
        return await off_loop(bm25.postings_read(rows) // 1000, lambda: bm25.ranked(rows, k1, b))

    async def _fetch_winners(
        self,
        keyword_rows: list[dict[str, object]],
        names: list[str],
        vector: list[float] | None,
        space_id: int | None,
        vector_rows: list[asyncpg.Record] | None,
        options: RecallOptions,
        shape: _Shape,
        plan: str,
        *,
        whole: bool = False,
        nearest: Candidates | None = None,
    ) -> list[asyncpg.Record]:
        """The statement after the Python scoring (``_fetch_scored``): the scope checked on the
        ``keyword_rows`` in order until the ranking's depth pass, fused with the vector ranking
        (``vector_rows`` fetched already, or computed here) as the one statement fuses them,
        the winners read whole; with the column ``checked`` (``bm25.with_checked``). The
        ``keyword_rows`` are every scored memory (``whole``) when a shortened list had too few
        in scope. Given the cached ``nearest`` copies, the vector ranking is the cached plan's,
        and the statement reports what its proof needs (``recall.sql.proven_ranking``)."""
        params = SqlParams()
        scope = recall_scope(params, names, options, generic=shape.exact)
        depth = shape.rows(params, shape.depth if vector is not None else shape.wanted)
        keyword = bm25.checked_ranking(params, scope, keyword_rows, depth, fused=vector is not None)
        vector_ranked = fusion = query = None
        proof = ""
        if vector is not None and space_id is not None:
            query = params.add(vector, "vector")
            if vector_rows is not None:
                vector_ranked = given_ranking(params, scope, vector_rows)
            else:
                space = params.add(space_id, "int")
                size = shape.rows(params, shape.vector_depth)
                cached = None
                if nearest is not None:
                    plan, cached = "cached", self._cached(params, nearest)
                vector_ranked = vector_ranking(scope, query, space, size, plan, len(vector), cached)
                if cached is not None:
                    vector_ranked, proof = proven_ranking(vector_ranked)
            fusion = self._fusion(params, options, depth)
        ranking = fused(vector_ranked, keyword, fusion)
        # The keyword ranking (and a vector ranking fetched at once with it) came from a
        # statement before this one: its winners are checked again here, as they are read.
        hits = fused_hits(
            scope, ranking, query, shape.rows(params, shape.wanted), shape.embedding, recheck=True
        )
        sql = bm25.with_checked(
            keyword,
            statement([], scope, hits),
            vector=vector_ranked if proof else None,
            columns=proof,
        )
        # Given its rankings and a shortened list, the statement probes the few rows it names
        # by their ids and counts the scope's pending memories by their index, whatever the
        # statistics: on generic plans, forced. Left to PostgreSQL, a backlog in another
        # namespace (after a rollback, 60,300 pending of 90,600 rows) priced the count's
        # generic plan at the average namespace's backlog, 28,830 against 9,850 custom, and it
        # planned every call afresh: keyword recall ran 1.19-1.23x the unmoved copy's in case
        # (a) at 30,000, 1.00x forced (benchmarks/RESULTS.md, issue 21 session 18). Not with a
        # vector ranking computed here (``_fetch`` decides). The whole list runs custom plans,
        # forced: a generic plan (PostgreSQL's choice too, once the short lists' plans made it
        # look cheap) takes any list for 10 rows and probed each of 30,000 ids across
        # namespaces where the custom plan read a selective filter's index (the statement
        # 5.6x slower, measured in a review).
        plans: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if whole:
            plans = custom_plans()
        elif vector is None or vector_rows is not None:
            plans = generic_plans()
        with database_errors(), plans:
            return list(await self._pool.fetch(sql, *params.values))

    async def _split_rankings(
        self,
        keyword: Awaitable[list[asyncpg.Record]],
        fetch: Callable[..., Awaitable[list[asyncpg.Record]]],
        names: list[str],
        vector: list[float],
        space_id: int,
        options: RecallOptions,
        shape: _Shape,
        plan: str,
        *,
        cache: bool = True,
    ) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        """A split hybrid recall's two statements at once: the ``keyword`` one's rows (the
        postings, or the SQL ranking) and the vector ranking's, run by ``fetch`` (a connection's
        or the pool's). The keyword statement is sent first; with the namespace's copies cached
        (and ``cache``), numpy ranks them while it runs, and the cached plan's ranking then runs
        beside it, on the copied plan if it is not proven."""

        async def vector_ranked() -> list[asyncpg.Record]:
            nearest = None
            if cache:
                nearest = await self._candidates(names, vector, space_id, plan, shape.vector_depth)
            vector_sql, vector_values = self._vector_statement(
                names, vector, space_id, options, shape, plan, nearest
            )
            vector_rows = await fetch(vector_sql, *vector_values)
            if nearest is not None and not nearest.certified(
                len(vector_rows),
                -vector_rows[-1]["score"] if vector_rows else None,
                shape.vector_depth,
            ):
                self._vectors.unproven(names[0], space_id)
                vector_sql, vector_values = self._vector_statement(
                    names, vector, space_id, options, shape, plan
                )
                vector_rows = await fetch(vector_sql, *vector_values)
            return vector_rows

        return await alongside(keyword, vector_ranked)

    def _vector_statement(
        self,
        names: list[str],
        vector: list[float],
        space_id: int,
        options: RecallOptions,
        shape: _Shape,
        plan: str,
        nearest: Candidates | None = None,
    ) -> tuple[str, list[object]]:
        """A split hybrid recall's vector ranking as a statement of its own, and its values:
        the cached plan's, given the ``nearest`` cached copies."""
        params = SqlParams()
        scope = recall_scope(params, names, options, generic=shape.exact)
        query = params.add(vector, "vector")
        space = params.add(space_id, "int")
        size = shape.rows(params, shape.vector_depth)
        cached = None
        if nearest is not None:
            plan, cached = "cached", self._cached(params, nearest)
        ranking = vector_ranking(scope, query, space, size, plan, len(vector), cached)
        return ranking_statement((), ranking), params.values

    @staticmethod
    def _cached(params: SqlParams, nearest: Candidates) -> CachedCandidates:
        """The cached plan's placeholders of ``nearest``, bound in ``params``."""
        return CachedCandidates(
            ids=params.add(nearest.ids, "uuid[]"),
            snapshot=params.add(nearest.snapshot, "text"),
        )

    async def _fetch_split(
        self,
        text: str,
        names: list[str],
        vector: list[float],
        space_id: int,
        options: RecallOptions,
        shape: _Shape,
        *,
        plan: str,
        postings: bool,
    ) -> list[asyncpg.Record]:
        """The rows of a hybrid recall as ``_fetch`` gives them, from three statements
        (recall/split.py): the vector ranking (the cached plan's when it may, see
        ``_split_rankings``) and the keyword ranking at once on two connections, each with the
        scope applied as in the one statement, then one that fuses them (``recall.sql.fused``,
        the same SQL), reads the winners that are still in scope and counts the pending
        memories."""
        settings = self._settings
        generic = shape.exact  # as in the one statement (see ``_fetch``)
        keyword_params = SqlParams()
        scope = recall_scope(keyword_params, names, options, generic=generic)
        terms = query_terms(keyword_params.add(text, "text"))
        keyword_ranked = keyword_ranking(
            keyword_params,
            scope,
            shape.rows(keyword_params, shape.depth),
            settings.bm25_k1,
            settings.bm25_b,
            postings=postings,
        )
        keyword_sql = ranking_statement((*terms, *keyword_ranked.ctes), keyword_ranked)

        # The fusion runs on the keyword ranking's connection, kept, not on a third
        # acquisition (an acquire and a release cost ~60 us, the release a task of its own:
        # benchmarks/RESULTS.md, issue 25 session 14); the vector ranking's goes back at once.
        with database_errors():
            async with self._pool.acquire() as connection:
                async with self._pool.acquire() as other:
                    keyword_rows, vector_rows = await self._split_rankings(
                        connection.fetch(keyword_sql, *keyword_params.values),
                        other.fetch,
                        names,
                        vector,
                        space_id,
                        options,
                        shape,
                        plan,
                    )
                params = SqlParams()
                scope = recall_scope(params, names, options, generic=generic)
                sql = fused_statement(
                    params,
                    scope,
                    (vector_rows, keyword_rows),
                    # The keyword ranking's depth written out: its list's length against it
                    # decides the floor of score fusion (a shorter list holds every matching
                    # row).
                    self._fusion(params, options, row_limit(shape.depth)),
                    params.add(vector, "vector"),
                    row_limit(shape.wanted),
                    shape.embedding,
                )
                return list(await connection.fetch(sql, *params.values))

    def _fusion(self, params: SqlParams, options: RecallOptions, depth: str) -> Fusion:
        """The fusion of hybrid recall: the store's method, the recall's weights or the
        store's, bound in ``params``; ``depth`` is the keyword ranking's LIMIT."""
        settings = self._settings
        vector_weight = _weight(options.vector_weight, settings.hybrid_vector_weight)
        keyword_weight = _weight(options.keyword_weight, settings.hybrid_keyword_weight)
        return Fusion(
            method=settings.hybrid_fusion,
            vector_weight=params.add(vector_weight, "float8"),
            keyword_weight=params.add(keyword_weight, "float8"),
            # Bound only where the statement reads it: every placeholder must be.
            rrf_k=(params.add(settings.rrf_k, "float8") if settings.hybrid_fusion == "rrf" else ""),
            depth=depth,
        )


@dataclass(frozen=True, slots=True)
class _Shape:
    """How many rows each part of a recall's statement keeps."""

    exact: bool  # LIMITs written out (a generic plan settles); bound through the graph
    wanted: int  # the rows fetched: k, or the candidates a re-ranking needs
    depth: int  # each ranking's candidates before fusion
    candidates: int  # the vector ranking's alone: through the graph a few more, re-sorted
    embedding: str  # the hits' vector column: read only for a diverse (MMR) re-ranking

    @classmethod
    def of(cls, options: RecallOptions, settings: Settings, exact: bool) -> _Shape:
        wanted = max(options.k, settings.hybrid_depth) if needs_candidates(options) else options.k
        # Through HNSW the vector ranking fetches a few more candidates than asked, for the
        # exact re-sort.
        candidates = wanted if exact else max(wanted, options.k * CANDIDATE_FACTOR)
        depth = max(settings.hybrid_depth, wanted)
        embedding = "m.embedding" if options.diversity > 0 else "NULL::vector"
        return cls(
            exact=exact,
            wanted=wanted,
            depth=depth,
            candidates=candidates,
            embedding=embedding,
        )

    @property
    def vector_depth(self) -> int:
        """The vector ranking's candidates in hybrid recall."""
        return max(self.depth, self.candidates)

    def rows(self, params: SqlParams, count: int) -> str:
        """A LIMIT of ``count``: written out for the exact plans, bound for the graph's."""
        return row_limit(count) if self.exact else params.add(count, "int")


def _neighbours(options: RecallOptions, settings: Settings) -> int:
    """The recall's own count, else the store's; none with ``as_of`` (neighbours are current
    memories, the hits of an as-of recall are past versions)."""
    if options.neighbours is not None:
        return options.neighbours
    return 0 if options.as_of is not None else settings.recall_neighbours


def _weight(given: float | None, default: float) -> float:
    return float(default if given is None else given)
