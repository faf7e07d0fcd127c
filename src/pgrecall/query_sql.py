"""SQL of recall: the vector ranking, the keyword (BM25) ranking, and their fusion.

Everything is built here from fixed text plus bound parameters; user values never reach the SQL
text. Each builder returns a subquery with columns (namespace, id, score, rank).
"""

from __future__ import annotations

from dataclasses import dataclass

from pgrecall.filters import SqlParams

# A scoped row's columns for a hit.
HIT_COLUMNS = "m.id, m.namespace, m.content, m.metadata, m.key, m.created_at, m.expires_at"


@dataclass(frozen=True, slots=True)
class Scope:
    """Placeholders and conditions shared by both rankings."""

    namespaces: str  # placeholder of the namespaces array
    conditions: str  # namespace, expiry, created range and metadata filter, over alias m


SHARED_SCOPE = "scoped"


def shared_scope(scope: Scope) -> str:
    """A CTE holding a small scope's rows once, for both rankings to read."""
    return f"""
        {SHARED_SCOPE} AS MATERIALIZED (
            SELECT m.namespace, m.id, m.embedding, m.space_id, m.search FROM memories m
            WHERE {scope.conditions}
        )"""


def vector_ranking(
    params: SqlParams,
    scope: Scope,
    query: str,
    space: str,
    depth: str,
    exact: bool,
    *,
    shared: bool = False,
) -> str:
    """Top ``depth`` by inner product: exact sort, or HNSW with an exact re-sort. ``shared``
    reads the rows of ``shared_scope`` instead of the table."""
    where = f"{scope.conditions} AND m.embedding IS NOT NULL AND m.space_id = {space}"
    if shared:
        inner = f"""
            SELECT m.namespace, m.id, (m.embedding <#> {query}) AS distance
            FROM {SHARED_SCOPE} m WHERE m.embedding IS NOT NULL AND m.space_id = {space}
            ORDER BY (m.embedding <#> {query}), m.id LIMIT {depth}
        """
    elif exact:
        # "+ 0" keeps the planner off the HNSW index: the sort is exact.
        inner = f"""
            SELECT m.namespace, m.id, (m.embedding <#> {query}) AS distance FROM memories m
            WHERE {where} ORDER BY (m.embedding <#> {query}) + 0, m.id LIMIT {depth}
        """
    else:
        inner = f"""
            SELECT m.namespace, m.id, (m.embedding <#> {query}) AS distance FROM memories m
            WHERE {where} ORDER BY m.embedding <#> {query} LIMIT {depth}
        """
    return f"""
        SELECT namespace, id, -distance AS score,
               row_number() OVER (ORDER BY distance, id) AS rank
        FROM ({inner}) AS nearest
    """


def keyword_ranking(
    params: SqlParams,
    scope: Scope,
    text: str,
    depth: str,
    k1: float,
    b: float,
    *,
    small: bool,
    shared: bool = False,
) -> str:
    """Top ``depth`` by BM25 over the scope. Any query word may match (OR), so natural
    questions find memories; rare words weigh more (IDF over the namespaces in scope).

    ``small`` scopes are read through the namespace btree first and matched row by row (the
    GIN index would list matches from every namespace of the table); large ones use the GIN.
    """
    k1_param = params.add(k1, "float8")
    b_param = params.add(b, "float8")
    # N, the number of memories IDF is computed over: those in scope.
    count = f"(SELECT count(*) FROM memories WHERE namespace = ANY({scope.namespaces}))"
    if small:
        count = f"(SELECT count(*) FROM {SHARED_SCOPE})"
        own_scope = "" if shared else shared_scope(scope) + ","
        matched = f"""{own_scope}
            matched AS MATERIALIZED (
                SELECT s.namespace, s.id, s.search FROM {SHARED_SCOPE} s, query
                WHERE s.search @@ query.tsq
            )"""
    else:
        matched = f"""
            matched AS MATERIALIZED (
                SELECT m.namespace, m.id, m.search FROM memories m, query
                WHERE {scope.conditions} AND m.search @@ query.tsq
            )"""
    return f"""
        SELECT namespace, id, score, row_number() OVER (ORDER BY score DESC, id) AS rank
        FROM (
            WITH terms AS (
                SELECT DISTINCT lexeme
                FROM unnest(tsvector_to_array(to_tsvector(pgrecall_text_config(), {text})))
                     AS lexeme
            ),
            query AS (
                -- Lexemes never hold quotes or backslashes (the parser splits on them).
                SELECT (SELECT array_agg(lexeme) FROM terms) AS lexemes,
                       (SELECT string_agg('''' || lexeme || '''', ' | ') FROM terms)::tsquery
                       AS tsq
            ),
            {matched},
            postings AS (
                SELECT d.namespace, d.id, t.lexeme, cardinality(t.positions) AS tf,
                       length(d.search) AS dl
                FROM matched d, query, unnest(d.search) AS t
                WHERE t.lexeme = ANY(query.lexemes)
            ),
            frequency AS MATERIALIZED (
                SELECT lexeme, count(*) AS df FROM postings GROUP BY lexeme
            ),
            collection AS (
                SELECT {count} AS n, (SELECT avg(length(search)) FROM matched) AS avgdl
            )
            SELECT p.namespace, p.id,
                   sum(ln(1 + (c.n - f.df + 0.5) / (f.df + 0.5))
                       * p.tf * ({k1_param} + 1)
                       / (p.tf + {k1_param} * (1 - {b_param} + {b_param} * p.dl
                                               / greatest(c.avgdl, 1))))
                   AS score
            FROM postings p JOIN frequency f USING (lexeme), collection c
            GROUP BY p.namespace, p.id
            ORDER BY score DESC, p.id
            LIMIT {depth}
        ) AS best
    """


def fused(vector: str | None, keyword: str | None, weights: tuple[str, str], rrf_k: str) -> str:
    """Reciprocal-rank fusion of the rankings given (one of them may be absent)."""
    if vector is None and keyword is None:
        raise ValueError("fusion needs at least one ranking")
    if keyword is None:
        return f"""SELECT namespace, id, score AS vector_score, NULL::float8 AS keyword_score,
                          score AS fused FROM ({vector}) AS v"""
    if vector is None:
        return f"""SELECT namespace, id, NULL::float8 AS vector_score, score AS keyword_score,
                          score AS fused FROM ({keyword}) AS k"""
    vector_weight, keyword_weight = weights
    return f"""
        SELECT coalesce(v.namespace, k.namespace) AS namespace, coalesce(v.id, k.id) AS id,
               v.score AS vector_score, k.score AS keyword_score,
               coalesce({vector_weight} / ({rrf_k} + v.rank), 0)
               + coalesce({keyword_weight} / ({rrf_k} + k.rank), 0) AS fused
        FROM ({vector}) AS v FULL OUTER JOIN ({keyword}) AS k
             ON v.namespace = k.namespace AND v.id = k.id
    """
