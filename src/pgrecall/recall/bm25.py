"""BM25 of namespaces that read the keyword postings, scored in Python (numpy) from the query's
postings instead of in PostgreSQL's executor.

One index-only statement (``postings_statement``) returns the query's postings, one row per
(namespace, lexeme) with the memories, term frequencies and lengths packed as bytes (16 bytes a
memory id, 4 a count, big-endian), plus BM25's N (``recall.sql.postings_count``). ``ranked``
scores them exactly as ``recall.sql.keyword_ranking`` does (df = postings per lexeme, avgdl over
the matching memories, the same arithmetic in the same order of operations), and gives the
memories best first, ties by id as PostgreSQL orders uuids (their bytes). The scope (expiry,
validity, filters) is then checked on the best ones in that order by the statement that reads the
winners (``checked_ranking``), as the SQL plan checks its best-scored rows.

Measured on SciFact's 5,183 abstracts (benchmarks/RESULTS.md, issue 25 session 14; 300 claims,
the same hits both ways): the keyword statement's round trip 0.66x PostgreSQL's scoring (2.90
against 4.36 ms p50), its backend CPU 1.80 against 4.61 ms for 1.1 ms more in the client; keyword
recall 1.38x faster in process, 1.31x over HTTP. Postings fetched as arrays instead of bytes
cost 0.87x: asyncpg builds an object per uuid and per integer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from asyncpg.pgproto.pgproto import UUID

from pgrecall.db.params import SqlParams
from pgrecall.recall.sql import (
    QUERY_LEXEMES,
    Ranking,
    Scope,
    bound_rows,
    namespace_comparison,
    postings_count,
    query_terms,
    written_since,
)

# A memory id as the postings statement packs it (uuid_send), and a count (int4send).
_ID = np.dtype("V16")
_HALVES = np.dtype(">u8")
_COUNT = np.dtype(">i4")


def namespaces_scope(params: SqlParams, names: Sequence[str], *, generic: bool) -> Scope:
    """The scope of the postings statement: the namespaces alone, compared as
    ``recall.sql.recall_scope`` compares them (the other conditions are the winners')."""
    return Scope(
        in_namespaces=namespace_comparison(params, names, generic=generic),
        conditions="TRUE",
        one_namespace=len(names) == 1,
    )


def postings_statement(scope: Scope, text: str) -> str:
    """The query's postings in the scope's namespaces: (namespace, lexeme, ids, tfs, dls,
    documents), one row per namespace and lexeme; ``text`` is the query's placeholder. The moved
    rows' from ``memory_terms`` (an index-only range per lexeme), the others' from their
    tsvectors, as ``recall.sql.keyword_postings`` reads them."""
    moved = f"""moved AS (
            SELECT p.namespace, p.lexeme, p.memory_id AS id, p.tf, p.dl
            FROM memory_terms p
            WHERE p.namespace {scope.in_namespaces}
              AND p.lexeme = ANY(ARRAY(SELECT lexeme FROM terms))
        )"""
    return f"""
        WITH {_postings(scope, text, moved)}
        SELECT *, {postings_count(scope)} AS documents FROM ({_GROUPED}) AS grouped
    """


def postings_since_statement(scope: Scope, text: str, snapshot: str) -> str:
    """What a process's cache of one namespace's postings, read under ``snapshot`` (a
    placeholder of its text), lacks for the query (``recall.keyword_cache``): the postings moved
    since and the rows not moved, as ``postings_statement`` gives them, each row with the
    query's lexemes, BM25's N and the namespace's count of dropped postings (``dropped``:
    the cache holds every posting still there only while it is the cache's). One row with
    NULL postings when there are none.

    The postings moved since are read by the index of ``moved_by`` alone (materialized, then
    the lexemes kept): with the lexemes in the same scan, the planner reads them by the primary
    key, and each posting's heap row for ``moved_by``."""
    moved = f"""written AS MATERIALIZED (
            SELECT p.namespace, p.lexeme, p.memory_id AS id, p.tf, p.dl
            FROM memory_terms p
            WHERE p.namespace {scope.in_namespaces} AND {written_since("p.moved_by", snapshot)}
        ),
        moved AS (
            SELECT * FROM written WHERE lexeme = ANY(ARRAY(SELECT lexeme FROM terms))
        )"""
    return f"""
        WITH {_postings(scope, text, moved)}
        SELECT h.lexemes, h.dropped, h.documents, g.*
        FROM (
            SELECT (SELECT array_agg(lexeme) FROM terms) AS lexemes,
                   (SELECT c.dropped FROM memory_term_counts c
                    WHERE c.namespace {scope.in_namespaces}) AS dropped,
                   {postings_count(scope)} AS documents
        ) AS h
        LEFT JOIN ({_GROUPED}) AS g ON true
    """


def _postings(scope: Scope, text: str, moved: str) -> str:
    """The CTEs of a postings statement: the query's ``terms``, and ``postings`` (namespace,
    lexeme, id, tf, dl): the ``moved`` CTE's and the rows' not moved yet, from their
    tsvectors."""
    terms, query = query_terms(text)
    return f"""{terms},
        {query},
        {moved},
        postings AS (
            SELECT namespace, lexeme, id, tf, dl FROM moved
            UNION ALL
            SELECT m.namespace, t.lexeme, m.id, cardinality(t.positions), length(m.search)
            FROM memories m, query, unnest({QUERY_LEXEMES}) AS t
            WHERE m.namespace {scope.in_namespaces} AND NOT m.terms_indexed
              AND m.search @@ query.tsq
        )"""


# The postings packed, one row per namespace and lexeme (the module's docstring says how).
_GROUPED = """
    SELECT namespace, lexeme,
           string_agg(uuid_send(id), ''::bytea) AS ids,
           string_agg(int4send(tf), ''::bytea) AS tfs,
           string_agg(int4send(dl), ''::bytea) AS dls
    FROM postings GROUP BY namespace, lexeme
"""


@dataclass(frozen=True, slots=True)
class Scored:
    """The memories that share a lexeme with the query and their BM25 scores, in no order
    (``top`` orders the best)."""

    names: list[str]  # the namespaces, sorted
    spaces: npt.NDArray[np.intp]  # each memory's namespace, an index into ``names``
    ids: npt.NDArray[np.void]  # 16 bytes each, as uuid_send gives them
    scores: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.scores)

    def top(self, count: int) -> list[dict[str, Any]]:
        """The best ``count``, best first, ties by id (PostgreSQL orders uuids by their bytes),
        as (namespace, id, score) rows for ``recall.split.given_ranking``. Only the memories
        scoring at least the ``count``-th best score are sorted. asyncpg's UUID is made from
        the 16 bytes in 0.19 us, the standard library's in 1.0."""
        chosen = np.arange(len(self.scores))
        if count < len(self.scores):
            bound = np.partition(self.scores, len(self.scores) - count)[len(self.scores) - count]
            chosen = np.flatnonzero(self.scores >= bound)
        halves = self.ids[chosen].view(_HALVES).reshape(-1, 2)
        order = chosen[np.lexsort((halves[:, 1], halves[:, 0], -self.scores[chosen]))][:count]
        # The ids cut from one buffer: a numpy scalar's tobytes() per row took 200 rows 0.41 ms
        # against 0.23.
        raw = self.ids[order].tobytes()
        return [
            {"namespace": self.names[space], "id": UUID(raw[at : at + 16]), "score": score}
            for at, space, score in zip(
                range(0, len(raw), 16),
                self.spaces[order].tolist(),
                self.scores[order].tolist(),
                strict=True,
            )
        ]


def ranked(rows: Sequence[Any], k1: float, b: float) -> Scored:
    """BM25 of every memory in ``rows`` (``postings_statement``'s)."""
    names = sorted({row["namespace"] for row in rows})
    if not rows:
        return Scored(names, np.empty(0, np.intp), np.empty(0, _ID), np.empty(0, np.float64))
    # By lexeme: each memory's score is summed in the lexemes' order, as the process's cache
    # sums it (``recall.keyword_cache``), so both give the same bits.
    rows = sorted(rows, key=lambda row: (row["lexeme"], row["namespace"]))
    sizes = [len(row["ids"]) // _ID.itemsize for row in rows]
    df: dict[str, int] = {}
    for row, size in zip(rows, sizes, strict=True):
        df[row["lexeme"]] = df.get(row["lexeme"], 0) + size
    ids = np.frombuffer(b"".join([row["ids"] for row in rows]), _ID)
    tf = np.frombuffer(b"".join([row["tfs"] for row in rows]), _COUNT).astype(np.float64)
    dl = np.frombuffer(b"".join([row["dls"] for row in rows]), _COUNT).astype(np.float64)
    spaces = np.repeat([names.index(row["namespace"]) for row in rows], sizes)
    group, first = memories(ids, spaces)
    weight = np.repeat(
        idf_weights(float(rows[0]["documents"]), df, k1, [r["lexeme"] for r in rows]), sizes
    )
    scores = bm25_sums(weight, tf, dl, group, len(first), float(dl[first].mean()), k1, b)
    return Scored(names, spaces[first], ids[first], scores)


def idf_weights(n: float, df: dict[str, int], k1: float, lexemes: Sequence[str]) -> list[float]:
    """Each of ``lexemes``' idf times (k1 + 1), once per lexeme as the SQL plan arranges BM25's
    factors (``recall.sql.keyword_ranking``); ``df`` the postings of each. math.log is the C
    library's, as PostgreSQL's ln."""
    weights = {
        lexeme: math.log(1 + (n - count + 0.5) / (count + 0.5)) * (k1 + 1)
        for lexeme, count in df.items()
    }
    return [weights[lexeme] for lexeme in lexemes]


def bm25_sums(
    weight: npt.NDArray[np.float64],
    tf: npt.NDArray[np.float64],
    dl: npt.NDArray[np.float64],
    group: npt.NDArray[np.intp],
    groups: int,
    avgdl: float,
    k1: float,
    b: float,
) -> npt.NDArray[np.float64]:
    """The BM25 score of each of ``groups`` memories: the sum, in the postings' order, of
    their postings' ``weight`` (``idf_weights``) tf / (tf + k1 (1 - b) + k1 b dl / avgdl),
    k1 (1 - b) and k1 b / avgdl computed once as the SQL plan does."""
    fixed = k1 * (1 - b)
    per_length = k1 * b / max(avgdl, 1.0)
    per_posting = weight * tf / (tf + fixed + per_length * dl)
    return np.asarray(np.bincount(group, weights=per_posting, minlength=groups), dtype=np.float64)


def postings_read(rows: Sequence[Any]) -> int:
    """How many postings ``rows`` hold (the scoring's size: ~0.25 us each, see ``ranked``)."""
    return sum(len(row["ids"]) for row in rows) // _ID.itemsize


def memories(
    ids: npt.NDArray[np.void], spaces: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Each posting's memory (a group number) and each memory's first posting. Sorted by the
    id's first 8 bytes (an integer sort, which merges the lexemes' runs already sorted by the
    index: 0.19 ms for 5,900 postings, where sorting the 16-byte ids took 1.0 ms); fully only if
    two memories share them or a namespace differs."""
    if not len(ids):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    halves = ids.view(_HALVES).reshape(-1, 2)
    high = halves[:, 0].astype(np.uint64)
    order = np.argsort(high, kind="stable")
    high, low, where = high[order], halves[order, 1], spaces[order]
    same_high = high[1:] == high[:-1]
    if not np.array_equal(low[1:][same_high], low[:-1][same_high]) or not np.array_equal(
        where[1:][same_high], where[:-1][same_high]
    ):
        order = np.lexsort((halves[:, 1], halves[:, 0], spaces))
        high, low, where = halves[order, 0], halves[order, 1], spaces[order]
        same_high = (high[1:] == high[:-1]) & (low[1:] == low[:-1]) & (where[1:] == where[:-1])
    starts = np.concatenate(([True], ~same_high))
    group = np.empty(len(ids), np.intp)
    group[order] = np.cumsum(starts) - 1
    return group, order[starts]


# The best-scored memories whose scope the winners' statement checks, per row it keeps; every
# scored memory only when fewer pass (many expired, invalid or filtered out): the SQL plan's
# probes in score order, without sending a namespace's every match each time.
CANDIDATES_PER_ROW = 2
# The checked keyword ranking's CTE, and the column counting its rows.
CHECKED = "keyword_checked"


def checked_ranking(
    params: SqlParams, scope: Scope, rows: list[dict[str, Any]], depth: str, *, fused: bool
) -> Ranking:
    """The first ``depth`` of ``rows`` (best first) that are in ``scope``, ranked; a CTE, so
    ``with_checked`` can count its rows.

    A ranking to be ``fused`` (hybrid) in a scope of one namespace's current memories: the
    rows whose id is not in the scope's exclusion set (``recall.sql.scope_exclusions``), no
    memory read. A memory deleted since the postings were read passes it (no index names it
    any more); the winners are read in fused order until enough are found
    (``recall.sql.fused_hits``' recheck), so it is skipped there, as a split recall skips its
    vector ranking's. Probing each of hybrid's ~100 best in SciFact's long rows cost its
    winners' statement 1.36-1.68x (benchmarks/RESULTS.md, issue 25 session 15).

    Otherwise the scope's probe per row in that order, as ``recall.sql.keyword_ranking``
    checks its best-scored rows (in one namespace a lateral probe per row, which keeps the
    statement on one shard on Citus; across namespaces a join, as ``recall.sql._alive``
    explains). Keyword mode keeps it: its ~k probes read the pages its winners are then read
    from, and a deleted memory gives way to the next."""
    given = bound_rows(params, scope, rows)
    key = "m.namespace = g.namespace AND m.id = g.id"
    if fused and scope.excluded is not None:
        alive = f"WHERE g.id NOT IN ({scope.excluded})"
    elif scope.one_namespace:
        alive = f"""CROSS JOIN LATERAL (
                    SELECT 1 FROM memories m WHERE {scope.conditions} AND {key} OFFSET 0
                ) AS alive"""
    else:
        alive = f"JOIN memories m ON {scope.conditions} AND {key}"
    return Ranking(
        ctes=(
            f"""{CHECKED} AS MATERIALIZED (
            SELECT g.namespace, g.id, g.score, row_number() OVER (ORDER BY g.place) AS rank
            FROM (
                SELECT g.namespace, g.id, g.score, g.place
                FROM {given} AS g (namespace, id, score, place)
                {alive}
                ORDER BY g.place
                LIMIT {depth}
            ) AS g
        )""",
        ),
        select=f"SELECT namespace, id, score, rank FROM {CHECKED}",
    )


def with_checked(
    keyword: Ranking, body: str, *, vector: Ranking | None = None, columns: str = ""
) -> str:
    """``body`` (a ``recall.sql.statement`` that reads ``keyword``, a ``checked_ranking``) with
    ``keyword``'s CTE and a column ``checked``: how many rows passed the scope. Fewer than the
    depth from a shortened list of candidates means the list must be sent whole. A ``vector``
    ranking's CTEs and ``columns`` on it too (``recall.sql.proven_ranking``)."""
    ctes = (*keyword.ctes, *(vector.ctes if vector is not None else ()))
    reported = f"{columns}, " if columns else ""
    return f"""WITH {", ".join(ctes)}
        SELECT (SELECT count(*) FROM {CHECKED}) AS checked, {reported}body.*
        FROM ({body}) AS body
        ORDER BY body.score DESC NULLS LAST, body.vector_score DESC NULLS LAST, body.id"""
