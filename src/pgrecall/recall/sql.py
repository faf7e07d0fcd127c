"""SQL of recall: the scope, the vector ranking, the keyword (BM25) ranking, their fusion, and
the whole statement around them.

Everything is built here from fixed text plus bound parameters; user values never reach the SQL
text. A ranking is a list of named subqueries (CTEs) plus a select with columns
(namespace, id, score, rank); the caller joins the CTEs of every ranking into one WITH.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from pgrecall.background.expiry import expired, unexpired
from pgrecall.config import FusionMethod
from pgrecall.db.params import SqlParams
from pgrecall.db.schema import indexed_embedding
from pgrecall.recall.filters import compile_filter
from pgrecall.records import RecallOptions
from pgrecall.versions import as_of_relation, valid_time_condition, validity_ended

# A memory's columns in a hit.
HIT_COLUMNS = (
    "m.id, m.namespace, m.content, m.metadata, m.key, m.created_at, m.expires_at, m.version, "
    "m.valid_from, m.valid_until"
)
# A matching row's tsvector cut down to the query's lexemes (marked with weight A, kept), so
# term frequencies are read from a vector of one or two entries.
QUERY_LEXEMES = "ts_filter(setweight(m.search, 'A', query.lexemes), '{a}')"


@dataclass(frozen=True, slots=True)
class Scope:
    """Placeholders and conditions shared by both rankings."""

    # "= $n::text" (one namespace) or "= ANY($n::text[])", after a column. Every reference to
    # memories in a statement carries it, even where a join implies it: Citus routes a
    # statement to one shard only when each reference names the namespace (measured: a recall
    # of a 100-row namespace ran its final join on all 32 shards, 20 ms, without it; 2.5 ms with).
    in_namespaces: str
    conditions: str  # namespace, expiry, created range, valid time, metadata filter, over m
    source: str = "memories"  # the relation read as m: the table, or a CTE of past versions
    one_namespace: bool = False  # the scope names exactly one namespace
    # The ids of the namespace's memories out of the scope (``scope_exclusions``), when the
    # scope is one namespace's current memories: candidates ``id NOT IN`` it need no probe.
    excluded: str | None = None
    namespace: str | None = None  # with ``excluded``: that one namespace's value


# A ranking's rows as a statement returned them, or as Python ranked them: namespace, id, score.
RankedRows = Sequence[asyncpg.Record | Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Ranking:
    ctes: tuple[str, ...]  # "name AS (...)" subqueries the select reads
    select: str  # columns namespace, id, score, rank


def row_limit(count: int) -> str:
    """``count`` written into the SQL for a LIMIT. PostgreSQL estimates a bound LIMIT at a tenth
    of the rows, so every recall was planned anew (0.3 ms and more); with the LIMITs written out
    the prepared statement settles on one generic plan. Only an int is accepted, never text."""
    if type(count) is not int or count < 0:
        raise ValueError(f"a row limit must be a non-negative int, not {count!r}")
    return str(count)


def query_terms(text: str) -> tuple[str, ...]:
    """CTEs ``terms`` (the query's distinct lexemes) and ``query`` (their OR tsquery)."""
    return (
        f"""terms AS (
            SELECT DISTINCT lexeme
            FROM unnest(tsvector_to_array(to_tsvector(pgrecall_text_config(), {text}))) AS lexeme
        )""",
        # Each lexeme is quoted as tsquery input wants it: a URL's lexeme can hold a quote
        # ("/wiki/o'reilly_media"), so quotes are doubled and backslashes (tsquery's escape
        # character, chr(92)) escaped: whatever the text, it stays one lexeme, never operators.
        """query AS (
            SELECT (SELECT array_agg(lexeme) FROM terms) AS lexemes,
                   (SELECT string_agg(
                        '''' || replace(replace(lexeme, chr(92), chr(92) || chr(92)),
                                        '''', '''''') || '''',
                        ' | ')
                    FROM terms)::tsquery AS tsq
        )""",
    )


@dataclass(frozen=True, slots=True)
class CachedCandidates:
    """The placeholders of a recall's candidates from the process's cache of the namespace's
    copies (``recall.vector_cache``): their ids, and the snapshot the cache was read under."""

    ids: str  # uuid[]
    snapshot: str  # a pg_snapshot's text


def nearest(
    scope: Scope,
    vector: str,
    space: str,
    depth: str,
    plan: str,
    columns: str,
    dimensions: int,
    cached: CachedCandidates | None = None,
) -> str:
    """``columns`` and ``distance`` of the top ``depth`` rows by inner product, nearest first.

    ``plan`` "exact" sorts the scope read through the namespace btree; "copied" sorts the
    same rows exactly too, their vectors read from the narrow copies (see ``copied_nearest``);
    "cached" sorts the ``cached`` candidates and what the cache cannot know (see
    ``cached_nearest``); "hnsw" walks the HNSW index and adds the rows not in it yet (the
    graph holds the rows of large namespaces, see indexer.py; the few it has not taken in yet
    are sorted exactly, so new memories are found at once), then sorts the candidates
    exactly. The graph is built on
    the vectors cast to their size (``dimensions``, the query's), and its branch orders by that
    same expression.
    """
    where = f"{scope.conditions} AND m.embedding IS NOT NULL AND m.space_id = {space}"
    if plan == "copied":
        return copied_nearest(scope, vector, space, depth, columns, where)
    if plan == "cached":
        if cached is None:
            raise ValueError("the cached plan needs its candidates")
        return cached_nearest(scope, vector, space, depth, columns, where, cached)
    scored = f"SELECT {columns}, m.embedding <#> {vector} AS distance FROM {scope.source} m"
    # Sorting a subquery's output (the OFFSET 0 keeps it one) keeps the planner off the HNSW
    # index, and computes each row's distance once.
    exact = f"""SELECT * FROM ({scored} WHERE {{rows}} OFFSET 0) AS scoped
                ORDER BY distance, id LIMIT {depth}"""
    if plan == "exact":
        return exact.format(rows=where)
    graph = indexed_embedding(dimensions, "m")
    return f"""
        SELECT * FROM (
            (SELECT {columns}, {graph} <#> {vector} AS distance FROM {scope.source} m
             WHERE m.hnsw_indexed AND {where}
             ORDER BY {graph} <#> {vector} LIMIT {depth})
            UNION ALL
            ({exact.format(rows=f"NOT m.hnsw_indexed AND {where}")})
        ) AS candidates ORDER BY distance, id LIMIT {depth}
    """


# Copies read for the copied plan's bound: 64 x sqrt(depth), 203 for a vector recall of 10,
# 640 for hybrid's ranking of 100. On SciFact's 5,183 (random vectors, in process, alternated
# with no bound): vector recall 0.89-0.91x at 160-320 copies, 0.97x at 40; hybrid 0.95-0.96x at
# 400-800, 1.07x at 3,200 (RESULTS.md, issue 25 session 19).
_BOUND_SAMPLE_PER_ROOT_OF_DEPTH = 64


def copied_nearest(
    scope: Scope, vector: str, space: str, depth: str, columns: str, where: str
) -> str:
    """The exact top ``depth`` of one namespace whose vectors are copied (``memory_vectors``,
    background/copies.py): the copies of the space plus the rows not copied yet (those in
    scope), by distance, without the memories out of scope.

    Those are the scope's exclusion set (expired, or validity ended: ``scope_exclusions``, two
    partial index ranges, empty on most namespaces). The nearest ``depth`` + its size are kept
    by a bounded sort, then the excluded dropped: exact, since at most that many of them lie
    among the nearest, and every row of the namespace is a candidate once (a copy holds its
    row's vector and space: the triggers of migration 0014 drop a copy whose vector or space
    changes, or whose row is deleted). No candidate's row is read until the winners are. On
    SciFact (RESULTS.md, issue 25 session 15), against a primary-key probe of each candidate's
    row (a long row a page): hybrid's vector ranking at depth 100 1.05-1.09x; the exclusion
    set checked on every copy instead of after the sort cost vector mode 0.93-0.95x.
    Candidates carry no namespace through the sort (there is one, added after it). ``columns``
    are the candidates' (namespace, id).

    Only the copies within ``_distance_bound`` reach the sort: each copy the sort takes is
    copied into it (~0.15 us), where the bound rejects it for one comparison."""
    if scope.excluded is None or scope.namespace is None:
        raise ValueError("the copied plan needs a scope of one namespace's current memories")
    copies = f"v.namespace {scope.in_namespaces} AND v.space_id = {space}"
    kept = f"{depth} + (SELECT count(*) FROM ({scope.excluded}) AS excluded)"
    bound = _distance_bound(copies, vector, scope.excluded, depth)
    candidates = f"""
        (SELECT v.id, v.embedding <#> {vector} AS distance FROM memory_vectors v
         WHERE {copies} AND v.embedding <#> {vector} <= {bound} OFFSET 0)
        UNION ALL
        (SELECT m.id, m.embedding <#> {vector} AS distance FROM memories m
         WHERE {where} AND NOT m.vector_copied OFFSET 0)"""
    nearest_and_excluded = f"""
        SELECT * FROM ({candidates}) AS c ORDER BY c.distance, c.id LIMIT {kept}"""
    return f"""SELECT {columns}, m.distance FROM (
            SELECT {scope.namespace} AS namespace, c.id, c.distance
            FROM ({nearest_and_excluded}) AS c WHERE c.id NOT IN ({scope.excluded})
            ORDER BY c.distance, c.id LIMIT {depth}
        ) AS m"""


def written_since(column: str, snapshot: str) -> str:
    """The condition that ``column`` (an xid8, the transaction that wrote the row) committed
    after ``snapshot`` (a placeholder of a ``pg_snapshot``'s text) was taken, whatever order the
    writers committed in. An index range from the snapshot's xmin; NULL (written before the
    column) is older than any snapshot."""
    return (
        f"{column} >= pg_snapshot_xmin({snapshot}::pg_snapshot) "
        f"AND NOT pg_visible_in_snapshot({column}, {snapshot}::pg_snapshot)"
    )


def newer_copies(alias: str, snapshot: str) -> str:
    """The condition on ``alias`` (``memory_vectors``) of the copies written since
    ``snapshot``: an index range of ``memory_vectors_copied_by`` (migration 0018)."""
    return written_since(f"{alias}.copied_by", snapshot)


def cached_nearest(
    scope: Scope,
    vector: str,
    space: str,
    depth: str,
    columns: str,
    where: str,
    cached: CachedCandidates,
) -> str:
    """The exact top ``depth`` of one namespace's current memories, as ``copied_nearest``
    gives it, among the copies a process's cache chose (``cached.ids``, read by their key),
    the copies written since the cache's snapshot (``vector_cache.newer_copies``, an index
    range) and the rows not copied yet; the exclusion set dropped. Exact when the cache's
    proof holds (``vector_cache.Candidates.certified``): no copy left out is nearer than the
    ``depth``-th. A candidate deleted since is not found; one replaced since is read once, as
    a candidate (the copies written since are checked against the candidates, not each
    candidate against the snapshot: those are few, these ~100)."""
    if scope.excluded is None or scope.namespace is None:
        raise ValueError("the cached plan needs a scope of one namespace's current memories")
    copies = f"v.namespace {scope.in_namespaces} AND v.space_id = {space}"
    candidates = f"""
        (SELECT v.id, v.embedding <#> {vector} AS distance FROM memory_vectors v
         WHERE {copies} AND v.id = ANY({cached.ids}) OFFSET 0)
        UNION ALL
        (SELECT v.id, v.embedding <#> {vector} AS distance FROM memory_vectors v
         WHERE {copies} AND {newer_copies("v", cached.snapshot)} AND v.id <> ALL({cached.ids})
         OFFSET 0)
        UNION ALL
        (SELECT m.id, m.embedding <#> {vector} AS distance FROM memories m
         WHERE {where} AND NOT m.vector_copied OFFSET 0)"""
    return f"""SELECT {columns}, m.distance FROM (
            SELECT {scope.namespace} AS namespace, c.id, c.distance
            FROM ({candidates}) AS c WHERE c.id NOT IN ({scope.excluded})
            ORDER BY c.distance, c.id LIMIT {depth}
        ) AS m"""


def _distance_bound(copies: str, vector: str, excluded: str, depth: str) -> str:
    """A distance no nearer than the ``depth``-th nearest memory in scope: the ``depth``-th
    nearest of a sample of the namespace's copies not ``excluded``, or infinity if the sample
    holds fewer. Any ``depth`` memories in scope are at least as far as the ``depth`` nearest,
    so the answer lies within it, ties included (``<=``), and so does every excluded copy
    ranked before the answer's last: the bounded sort keeps what it kept, it only sees fewer
    rows. A sample far from the query costs a looser bound, never a wrong answer.

    The sample is the newest copies (ids are time-ordered, ``ingest/ids.py``): a range of the
    primary key, however many other namespaces' copies lie before the namespace's in the table
    (read in table order, a namespace stored after 8,000 other copies read all of them: the
    statement 1.56x, measured in a review), and the memories least likely to have expired or
    been invalidated. Bounded at ``depth`` in scope rather than at the sort's ``kept``, an
    exclusion set larger than the sample (invalidated facts stay) does not void the bound.
    ``depth`` is written out (the copied plan is exact; ``row_limit``)."""
    if not (depth.isascii() and depth.isdigit()):
        raise ValueError(f"the copied plan's depth is written out, not {depth!r}")
    sample = row_limit(math.ceil(_BOUND_SAMPLE_PER_ROOT_OF_DEPTH * math.sqrt(int(depth))))
    return f"""coalesce((
            SELECT max(s.distance) FROM (
                SELECT v.embedding <#> {vector} AS distance
                FROM (SELECT v.id, v.embedding FROM memory_vectors v WHERE {copies}
                      ORDER BY v.id DESC LIMIT {sample}) AS v
                WHERE v.id NOT IN ({excluded})
                ORDER BY distance LIMIT {depth}) AS s
            HAVING count(*) = {depth}), 'Infinity')"""


def vector_ranking(
    scope: Scope,
    vector: str,
    space: str,
    depth: str,
    plan: str,
    dimensions: int,
    cached: CachedCandidates | None = None,
) -> Ranking:
    """Top ``depth`` by inner product (see ``nearest``), ranked for fusion."""
    inner = nearest(scope, vector, space, depth, plan, "m.namespace, m.id", dimensions, cached)
    return Ranking(
        ctes=(),
        select=f"""
            SELECT namespace, id, -distance AS score,
                   row_number() OVER (ORDER BY distance, id) AS rank
            FROM ({inner}) AS nearest
        """,
    )


# The cached plan's vector ranking in hybrid recall, a CTE its statement reports on.
VECTOR_RANKED = "vector_ranked"


def proven_ranking(ranking: Ranking) -> tuple[Ranking, str]:
    """A cached plan's vector ranking read from a CTE, and the columns that report what its
    proof needs (``vector_cache.Candidates.certified``): ``vector_found``, its rows, and
    ``vector_farthest``, the last one's distance."""
    cte = f"{VECTOR_RANKED} AS MATERIALIZED ({ranking.select})"
    return (
        Ranking(
            ctes=(*ranking.ctes, cte),
            select=f"SELECT namespace, id, score, rank FROM {VECTOR_RANKED}",
        ),
        f"""(SELECT count(*) FROM {VECTOR_RANKED}) AS vector_found,
            (SELECT -min(score) FROM {VECTOR_RANKED}) AS vector_farthest""",
    )


def vector_hits(
    scope: Scope,
    vector: str,
    space: str,
    depth: str,
    plan: str,
    limit: str,
    embedding: str,
    dimensions: int,
    cached: CachedCandidates | None = None,
) -> str:
    """Vector mode alone: the hits of the ranking, without fusion (0.2 ms of planning instead
    of 0.4). The ranking sorts narrow rows and only the winners are read whole: carrying every
    candidate's text through the sort cost 2.5 ms on 5,000 abstracts."""
    inner = nearest(scope, vector, space, depth, plan, "m.namespace, m.id", dimensions, cached)
    return f"""
        SELECT {HIT_COLUMNS}, -n.distance AS score, -n.distance AS vector_score,
               NULL::float8 AS keyword_score, {embedding} AS embedding
        FROM (SELECT * FROM ({inner}) AS nearest ORDER BY distance, id LIMIT {limit}) AS n
        JOIN {scope.source} m ON m.namespace = n.namespace AND m.id = n.id
                        AND m.namespace {scope.in_namespaces}
    """


def keyword_ranking(
    params: SqlParams, scope: Scope, depth: str, k1: float, b: float, *, postings: bool
) -> Ranking:
    """Top ``depth`` by BM25 over the scope; needs the ``query_terms`` CTEs. Any query word may
    match (OR), so natural questions find memories; rare words weigh more (IDF; N is the
    namespaces' memories, counted on the namespace btree, or ``postings_count``).

    ``postings`` (large namespaces, see ``keyword_postings``): the query's lexemes are read
    from ``memory_terms``, plus the tsvectors of the rows not moved there yet. Otherwise every
    matching row of the scope is read (``scanned_postings``) and the statistics are the
    scope's. Both rank by the same scores where the scope is the whole namespace.
    """
    k1_param = params.add(k1, "float8")
    b_param = params.add(b, "float8")
    if postings and scope.source == "memories":
        ctes = keyword_postings(scope)
        documents = _matching_documents(scope)
        alive = _alive(scope)
        count = postings_count(scope)
    else:
        ctes, documents, alive = scanned_postings(scope), "matched", ""
        count = f"(SELECT count(*) FROM memories WHERE namespace {scope.in_namespaces})"
    # BM25's sum of idf x tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)), written so that a
    # posting pays two multiplications, two additions and a division: the idf and (k1 + 1) once
    # per lexeme (``weight``; MATERIALIZED, else the planner pulls the expression up above the
    # join and takes the logarithm per posting again), k1 (1 - b) and k1 b / avgdl once per
    # statement (``collection``). Scoring each posting in full cost SciFact's keyword
    # statement 1.19x the backend CPU (300 claims alternated; benchmarks/RESULTS.md, issue 25).
    collection = f"""collection AS (
            SELECT {k1_param} * (1 - {b_param}) AS fixed,
                   {k1_param} * {b_param} / greatest(avgdl, 1) AS per_length, n
            FROM (SELECT {count}::float8 AS n,
                         (SELECT avg(dl) FROM {documents})::float8 AS avgdl) AS statistics
        )"""
    frequency = f"""frequency AS MATERIALIZED (
            SELECT f.lexeme, ln(1 + (c.n - f.df + 0.5) / (f.df + 0.5)) * ({k1_param} + 1)
                   AS weight
            FROM (SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme) AS f,
                 collection c
        )"""
    scored = """scored AS (
            SELECT p.namespace, p.id,
                   sum(f.weight * p.tf / (p.tf + c.fixed + c.per_length * p.dl)) AS score
            FROM postings p JOIN frequency f USING (lexeme), collection c
            GROUP BY p.namespace, p.id
        )"""
    return Ranking(
        ctes=(*ctes, collection, frequency, scored),
        select=f"""
            SELECT namespace, id, score, row_number() OVER (ORDER BY score DESC, id) AS rank
            FROM (
                SELECT s.namespace, s.id, s.score
                FROM (SELECT * FROM scored ORDER BY score DESC, id) AS s
                {alive}
                ORDER BY s.score DESC, s.id
                LIMIT {depth}
            ) AS best
        """,
    )


def _matching_documents(scope: Scope) -> str:
    """The postings' distinct memories with their lengths (``avgdl`` is their average). In one
    namespace the namespace is left out of the key: hashing it cost 3 % of SciFact's
    keyword statement's backend CPU (1.03x with it; benchmarks/RESULTS.md, issue 25)."""
    key = "id" if scope.one_namespace else "namespace, id"
    return f"(SELECT DISTINCT {key}, dl FROM postings) AS documents"


def _alive(scope: Scope) -> str:
    """The scope's conditions on the best-scored rows of the postings, in score order.

    One namespace: a lateral lookup per row (OFFSET 0 keeps it a subquery, one probe each, and
    the statement one task on Citus). Several: a join on the key, as ``fused_hits`` does, since
    Citus cannot push a correlated subquery with an OFFSET down to several shards ("Offset
    clause is currently unsupported when a lateral subquery references a column from complex
    subqueries, CTEs or local tables")."""
    if scope.one_namespace:
        return f"""CROSS JOIN LATERAL (
                SELECT 1 FROM memories m
                WHERE {scope.conditions} AND m.namespace = s.namespace AND m.id = s.id OFFSET 0
            ) AS alive"""
    return f"""JOIN memories m
                ON {scope.conditions} AND m.namespace = s.namespace AND m.id = s.id"""


def scanned_postings(scope: Scope) -> tuple[str, ...]:
    """CTE ``postings`` (namespace, id, lexeme, tf, dl) of the scope's rows that match the
    query, each matching tsvector read and cut down to the query's lexemes.

    The planner picks how to find the matches from its lexeme statistics: the GIN index ANDed
    with the namespace btree for rare words, the namespace's rows filtered for common ones.
    (Reading a small scope once for both rankings was measured slower once tsvectors stayed
    inline and word frequencies were realistic: hybrid 3.9-4.3 ms against 3.0-3.2 ms.)
    """
    matched = f"""matched AS MATERIALIZED (
            SELECT m.namespace, m.id, {QUERY_LEXEMES} AS hits, length(m.search) AS dl
            FROM {scope.source} m, query
            WHERE {scope.conditions} AND m.search @@ query.tsq
        )"""
    postings = """postings AS MATERIALIZED (
            SELECT d.namespace, d.id, t.lexeme, cardinality(t.positions)::float8 AS tf,
                   d.dl::float8 AS dl
            FROM matched d, unnest(d.hits) AS t
        )"""
    return matched, postings


def postings_count(scope: Scope) -> str:
    """How many memories the scope's namespaces hold (BM25's N) without counting them: the moved
    ones from ``memory_term_counts`` (kept by the mover and the triggers, migration 0015) plus
    those not moved yet, few, through the partial index of unmoved rows. Counting the namespace
    instead cost 0.7 ms of SciFact's keyword statement (an index-only scan of 5,183 entries,
    growing with the namespace; 4.9 ms when the visibility map is not set): the stored count
    took the statement to 0.82-0.87x (benchmarks/RESULTS.md, issue 25)."""
    return f"""((SELECT coalesce(sum(c.documents), 0) FROM memory_term_counts c
                 WHERE c.namespace {scope.in_namespaces})
                + (SELECT count(*) FROM memories m
                   WHERE m.namespace {scope.in_namespaces} AND NOT m.terms_indexed))"""


def keyword_postings(scope: Scope) -> tuple[str, ...]:
    """CTE ``postings`` (namespace, id, lexeme, tf, dl) of the query's lexemes in the scope's
    namespaces: the moved rows' from ``memory_terms`` (one index range per lexeme, no memory
    read), the others' from their tsvectors (the worker moves rows in the background,
    background/postings.py, so these are few: the rows written since its last sweep).

    The statistics (document frequencies, the average length) are the namespaces', and the
    scope's other conditions (expiry, valid time, filters) are checked on the best-scored rows
    only, in score order (``keyword_ranking``): on SciFact this read 2.1x faster than reading
    every matching tsvector, with identical top-10 lists (benchmarks/RESULTS.md, issue 25).
    """
    # ``moved`` is read once, by ``postings``, which is materialized: materializing it as well
    # cost SciFact's keyword statement 1.05x the backend CPU (a second copy of every posting).
    moved = f"""moved AS (
            SELECT p.namespace, p.memory_id AS id, p.lexeme, p.tf::float8 AS tf,
                   p.dl::float8 AS dl
            FROM memory_terms p
            WHERE p.namespace {scope.in_namespaces}
              AND p.lexeme = ANY(ARRAY(SELECT lexeme FROM terms))
        )"""
    unmoved = f"""unmoved AS MATERIALIZED (
            SELECT m.namespace, m.id, {QUERY_LEXEMES} AS hits, length(m.search) AS dl
            FROM memories m, query
            WHERE m.namespace {scope.in_namespaces} AND NOT m.terms_indexed
              AND m.search @@ query.tsq
        )"""
    postings = """postings AS MATERIALIZED (
            SELECT namespace, id, lexeme, tf, dl FROM moved
            UNION ALL
            SELECT d.namespace, d.id, t.lexeme, cardinality(t.positions)::float8, d.dl::float8
            FROM unmoved d, unnest(d.hits) AS t
        )"""
    return moved, unmoved, postings


@dataclass(frozen=True, slots=True)
class Fusion:
    """How hybrid recall fuses its two rankings (``PGRECALL_HYBRID_FUSION``); every value is a
    placeholder or a literal of the statement."""

    method: FusionMethod
    vector_weight: str
    keyword_weight: str
    rrf_k: str  # rrf: 1 / (rrf_k + rank)
    depth: str  # the keyword ranking's LIMIT: a shorter list holds every matching row


def fused(vector: Ranking | None, keyword: Ranking, fusion: Fusion | None) -> str:
    """The vector and keyword rankings fused as ``fusion`` says (see ``rrf_fused`` and
    ``scores_fused``); the keyword ranking alone when there is no vector one."""
    if vector is None or fusion is None:
        return f"""SELECT namespace, id, NULL::float8 AS vector_score, score AS keyword_score,
                          score AS fused FROM ({keyword.select}) AS k"""
    if fusion.method == "scores":
        return scores_fused(vector, keyword, fusion)
    return rrf_fused(vector, keyword, fusion)


def rrf_fused(vector: Ranking, keyword: Ranking, fusion: Fusion) -> str:
    """Reciprocal-rank fusion: each ranking adds ``weight / (rrf_k + rank)``."""
    return f"""
        SELECT coalesce(v.namespace, k.namespace) AS namespace, coalesce(v.id, k.id) AS id,
               v.score AS vector_score, k.score AS keyword_score,
               coalesce({fusion.vector_weight} / ({fusion.rrf_k} + v.rank), 0)
               + coalesce({fusion.keyword_weight} / ({fusion.rrf_k} + k.rank), 0) AS fused
        FROM ({vector.select}) AS v FULL OUTER JOIN ({keyword.select}) AS k
             ON v.namespace = k.namespace AND v.id = k.id
    """


def scores_fused(vector: Ranking, keyword: Ranking, fusion: Fusion) -> str:
    """Score fusion: each ranking adds ``weight * standard``, its score in standard deviations
    above the best score a row outside its list can have (``standardised``), so a row missing
    from a list gets 0 there and every fused score is 0 or more (the recency and importance
    boosts multiply it).

    Unlike ranks, scores keep how far ahead a candidate is: on SciFact's 809 train claims
    nDCG@10 0.7305 against RRF's best 0.7225 (test 0.716 against 0.710 with RRF's defaults;
    benchmarks/RESULTS.md, issue 24). A short keyword list holds every row that shares a word
    with the query, so the rows outside it score 0 (BM25 of no shared word); a full list, and
    the vector list always, are cut at their lowest score.
    """
    keyword_floor = (
        f"CASE WHEN count(*) OVER () < {fusion.depth} THEN 0 ELSE min(score) OVER () END"
    )
    return f"""
        SELECT coalesce(v.namespace, k.namespace) AS namespace, coalesce(v.id, k.id) AS id,
               v.score AS vector_score, k.score AS keyword_score,
               coalesce({fusion.vector_weight} * v.standard, 0)
               + coalesce({fusion.keyword_weight} * k.standard, 0) AS fused
        FROM ({standardised(vector, "min(score) OVER ()")}) AS v
             FULL OUTER JOIN ({standardised(keyword, keyword_floor)}) AS k
             ON v.namespace = k.namespace AND v.id = k.id
    """


def standardised(ranking: Ranking, floor: str) -> str:
    """``ranking``'s rows with ``standard``: (score - ``floor``) / the standard deviation of its
    scores; with one distinct score, (score - floor) / (highest - floor), else 0."""
    return f"""
        SELECT namespace, id, score,
               (score - {floor})
               / coalesce(nullif(stddev_pop(score) OVER (), 0),
                          nullif(max(score) OVER () - {floor}, 0), 1) AS standard
        FROM ({ranking.select}) AS ranked
    """


def namespace_comparison(params: SqlParams, names: Sequence[str], *, generic: bool) -> str:
    """How a statement compares its namespaces, after a column: "= $n" for one namespace when
    ``generic`` (see the service on generic plans), else "= ANY($n)"."""
    if generic and len(names) == 1:
        return f"= {params.add(names[0], 'text')}"
    return f"= ANY({params.add(list(names), 'text[]')})"


def compared_namespace(comparison: str) -> str:
    """The value of a ``namespace_comparison`` of one namespace, as an expression of the same
    parameter (a parameter no statement uses has no type, and PostgreSQL refuses it)."""
    if comparison.startswith("= ANY(") and comparison.endswith(")"):
        return f"({comparison[len('= ANY(') : -1]})[1]"
    return comparison.removeprefix("= ")


def bound_rows(params: SqlParams, scope: Scope, rows: RankedRows) -> str:
    """A FROM item of ``rows`` (namespace, id, score), bound as arrays, with their place in
    ``rows``: columns (namespace, id, score, place) once the caller names them. In a scope of
    one namespace every row is of it (the rankings were read in that scope), so only the ids
    and scores are sent: an array of 200 namespaces cost 0.18 ms a statement to send, hybrid's
    winners' statement carries three of 100-200 (RESULTS.md, issue 25 session 19)."""
    ids = params.add([row["id"] for row in rows], "uuid[]")
    scores = params.add([row["score"] for row in rows], "float8[]")
    if scope.one_namespace:
        namespace = compared_namespace(scope.in_namespaces)
        return f"""(SELECT {namespace}::text, u.id, u.score, u.place
                  FROM unnest({ids}, {scores}) WITH ORDINALITY AS u (id, score, place))"""
    namespaces = params.add([row["namespace"] for row in rows], "text[]")
    return f"unnest({namespaces}, {ids}, {scores}) WITH ORDINALITY"


def recall_scope(
    params: SqlParams, names: list[str], options: RecallOptions, *, generic: bool
) -> Scope:
    """Which memories a recall may see: its namespaces, unexpired, valid (versions.py), in the
    created range and passing the metadata filter; read from the versions current at
    ``as_of`` when asked. ``generic``: one namespace is compared with "=" (see the service on
    generic plans)."""
    in_namespaces = namespace_comparison(params, names, generic=generic)
    conditions = [
        f"m.namespace {in_namespaces}",
        unexpired("m"),
    ]
    source = "memories"
    as_of = None
    if options.as_of is not None:
        as_of = params.add(options.as_of, "timestamptz")
        source = f"{as_of_relation(as_of, in_namespaces)} AS"  # read as "... AS m"
    valid = valid_time_condition(
        params, valid_at=options.valid_at, include_invalid=options.include_invalid, as_of=as_of
    )
    if valid is not None:
        conditions.append(valid)
    if options.created_after is not None:
        conditions.append(f"m.created_at >= {params.add(options.created_after, 'timestamptz')}")
    if options.created_before is not None:
        conditions.append(f"m.created_at < {params.add(options.created_before, 'timestamptz')}")
    conditions.append(compile_filter(options.filter, params, column="m.metadata"))
    excluded = namespace = None
    if current_memories(names, options):
        excluded = scope_exclusions(in_namespaces, include_invalid=options.include_invalid)
        namespace = compared_namespace(in_namespaces)
    return Scope(
        in_namespaces=in_namespaces,
        conditions=" AND ".join(conditions),
        source=source,
        one_namespace=len(names) == 1,
        excluded=excluded,
        namespace=namespace,
    )


def current_memories(names: Sequence[str], options: RecallOptions) -> bool:
    """Whether a recall's scope is one namespace's current memories: unexpired and valid now
    (or any validity, with ``include_invalid``), no metadata filter, created range, past
    validity (``valid_at``) or past versions (``as_of``). Its memories out of scope are then
    those of ``scope_exclusions``."""
    return (
        len(names) == 1
        and options.as_of is None
        and options.valid_at is None
        and options.created_after is None
        and options.created_before is None
        and not options.filter
    )


def scope_exclusions(in_namespaces: str, *, include_invalid: bool) -> str:
    """A subquery of the ids of the namespace's memories that are expired or (unless
    ``include_invalid``) whose validity has ended: the complement of ``current_memories``'
    scope among its rows. Read through the partial indexes of migration 0016 (the rows with an
    expiry, with an end of validity), which hold none of most namespaces' rows: the ranges
    ``expires_at <= now()`` and ``valid_until <= now()`` are what the sweeper has not deleted
    yet and the facts invalidated."""
    ended = [expired("x")] if include_invalid else [expired("x"), validity_ended("x")]
    return " UNION ALL ".join(
        f"SELECT x.id FROM memories x WHERE x.namespace {in_namespaces} AND {condition}"
        for condition in ended
    )


def fused_hits(
    scope: Scope,
    ranking: str,
    query: str | None,
    limit: str,
    embedding: str,
    *,
    recheck: bool = False,
) -> str:
    """The best ``limit`` rows of a fused ranking, read whole.

    In a scope of one namespace each winner is read by a lateral lookup that repeats the
    scope's namespace condition, so Citus routes the whole statement to that namespace's shard
    (one task instead of a final join on all 32). Its OFFSET 0 keeps the lookup a subquery, one
    index probe per winner whatever the namespace's statistics say: the condition repeated on a
    plain join once measured 1.7-1.8x slower on plain PostgreSQL (not reproduced since). The
    lookup plans as the join did (a nested loop over the winners, the same buffers) and its
    interleaved A/B showed no difference beyond the noise (benchmarks/RESULTS.md, "The fused
    hits' lookup"). Across namespaces the join stays: Citus cannot push a correlated subquery
    with an OFFSET down to several shards.

    ``recheck``: the rankings came from statements run before this one (recall/split.py), so a
    candidate may have left the scope since (expired, replaced, forgotten). The lookup then
    checks the scope's conditions and the winners are the best ``limit`` that pass, read in
    fused order until that many have.
    """
    vector_score = f"-(m.embedding <#> {query})" if query else "f.vector_score"
    where = scope.conditions if recheck else f"m.namespace {scope.in_namespaces}"
    if scope.one_namespace:
        winners = f"""CROSS JOIN LATERAL (
            SELECT * FROM {scope.source} m
            WHERE {where} AND m.namespace = f.namespace AND m.id = f.id OFFSET 0
        ) AS m"""
    else:
        on = f"{where} AND " if recheck else ""
        winners = f"JOIN {scope.source} m ON {on}m.namespace = f.namespace AND m.id = f.id"
    order = "fused DESC, vector_score DESC NULLS LAST, id"
    if recheck:
        candidates = f"SELECT * FROM ({ranking}) AS ranked ORDER BY {order}"
        after = f"ORDER BY f.fused DESC, f.vector_score DESC NULLS LAST, f.id LIMIT {limit}"
    else:
        candidates = f"SELECT * FROM ({ranking}) AS ranked ORDER BY {order} LIMIT {limit}"
        after = ""
    return f"""
        SELECT {HIT_COLUMNS}, f.fused AS score, {vector_score} AS vector_score,
               f.keyword_score, {embedding} AS embedding
        FROM ({candidates}) AS f
        {winners}
        {after}
    """


def statement(ctes: list[str], scope: Scope, hits: str, columns: str = "") -> str:
    """The whole recall: the CTEs the rankings need, the scope's pending count (one row even
    without hits), the ``columns`` a ranking reports (``proven_ranking``), and the hits best
    first."""
    prefix = "WITH " + ",\n".join(ctes) if ctes else ""
    reported = f"{columns}, " if columns else ""
    return f"""{prefix}
        SELECT pending.n AS pending, {reported}hits.* FROM
            (SELECT count(*) AS n FROM memories
             WHERE namespace {scope.in_namespaces} AND status = 'pending'
               AND {unexpired()}) AS pending
            LEFT JOIN LATERAL ({hits}) AS hits ON TRUE
        ORDER BY hits.score DESC NULLS LAST, hits.vector_score DESC NULLS LAST, hits.id
    """
