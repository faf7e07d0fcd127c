"""Neighbouring memories: each hit returned with the memories around it in its thread.

``recall(neighbours=n)`` returns, after each hit, up to ``n`` memories before it and ``n`` after
it in its thread (the ``PGRECALL_CONTEXT_KEY`` metadata value, in the same namespace, in the
order they were remembered: ``created_at``, then id), nearest first (the one just before, the
one just after, then the next ones out), all within ``k``: a hit and its neighbours fill the
list in turn until ``k`` memories, and a memory already in the list is not repeated. A neighbour
carries the score of the hit it came with and no vector or keyword score. Hits without the
thread key come alone. Neighbours are current, unexpired memories of the hit's namespace (the
caller may see it: the hit is there) under the recall's valid-time rule (a fact invalidated is
left out as it is from the hits, unless ``include_invalid``); the metadata filter and the created
range select hits, not their neighbours.

Why: in a dialogue the answer is often the turn next to the one that matches the question. On
LoCoMo-dev (benchmarks/locomo.py, five conversations, 997 questions) ten memories made of hits
and their neighbours (``neighbours=1``) held an evidence turn for 0.835 of the questions against
0.803 for the ten best hits, with hybrid fusion by score (0.837 against 0.796 by rank;
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
from collections import defaultdict
from uuid import UUID

import asyncpg

from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors
from pgrecall.db.params import SqlParams
from pgrecall.db.rows import from_row
from pgrecall.ingest.context import thread_of
from pgrecall.recall.sql import HIT_COLUMNS
from pgrecall.records import Hit, RecallOptions
from pgrecall.versions import valid_time_condition

# Per hit (w.i) of one namespace ($1), up to $5 memories of its thread before it (side -1) and
# after it (side 1), nearest first (place 1 is the memory right next to it). One statement per
# namespace, the namespace a single value (as ingest/context.py's lookup): on Citus a statement
# whose every read of memories names one namespace runs on that namespace's shard; with the
# namespaces unnested beside the lateral subqueries Citus refused it ("cannot push down this
# subquery"). A recall of one namespace, the usual case, costs one statement as before.
_AROUND = """
    SELECT w.i, n.*
    FROM unnest($2::jsonb[], $3::timestamptz[], $4::uuid[]) WITH ORDINALITY AS w(thread, at, id, i)
    CROSS JOIN LATERAL (
        (SELECT {columns}, -1 AS side,
                row_number() OVER (ORDER BY m.created_at DESC, m.id DESC) AS place
         FROM memories m
         WHERE m.namespace = $1 AND m.metadata @> w.thread AND {kept}
           AND (m.created_at, m.id) < (w.at, w.id)
         ORDER BY m.created_at DESC, m.id DESC LIMIT $5)
        UNION ALL
        (SELECT {columns}, 1 AS side,
                row_number() OVER (ORDER BY m.created_at, m.id) AS place
         FROM memories m
         WHERE m.namespace = $1 AND m.metadata @> w.thread AND {kept}
           AND (m.created_at, m.id) > (w.at, w.id)
         ORDER BY m.created_at, m.id LIMIT $5)
    ) AS n
    ORDER BY w.i, n.place, n.side
"""


def _around(options: RecallOptions) -> tuple[str, list[object]]:
    """The statement for this recall's valid-time rule, and the values it binds after $5."""
    params = SqlParams(first=6)
    valid = valid_time_condition(
        params, valid_at=options.valid_at, include_invalid=options.include_invalid, as_of=None
    )
    kept = unexpired("m") + (f" AND {valid}" if valid else "")
    return _AROUND.format(columns=HIT_COLUMNS, kept=kept), params.values


async def with_neighbours(
    pool: asyncpg.Pool, hits: list[Hit], thread_key: str, count: int, options: RecallOptions
) -> list[Hit]:
    """``hits`` (best first), each followed by its neighbours, cut to ``options.k`` memories."""
    k = options.k
    threads = [thread_of(hit.metadata, thread_key) for hit in hits]
    by_namespace: dict[str, list[int]] = defaultdict(list)
    for i, thread in enumerate(threads):
        if thread is not None:
            by_namespace[hits[i].namespace].append(i)
    around: dict[int, list[Hit]] = defaultdict(list)
    statement, valid_values = _around(options)
    for namespace, asked in by_namespace.items():
        with database_errors():
            rows = await pool.fetch(
                statement,
                namespace,
                [threads[i] for i in asked],
                [hits[i].created_at for i in asked],
                [hits[i].id for i in asked],
                count,
                *valid_values,
            )
        for row in rows:
            position = asked[row["i"] - 1]
            neighbour = from_row(
                Hit,
                row,
                score=hits[position].score,
                metadata=json.loads(row["metadata"]),
                vector_score=None,
                keyword_score=None,
            )
            around[position].append(neighbour)
    chosen: list[Hit] = []
    seen: set[UUID] = set()
    for i, hit in enumerate(hits):
        for memory in [hit, *around.get(i, [])]:
            if len(chosen) < k and memory.id not in seen:
                seen.add(memory.id)
                chosen.append(memory)
    return chosen
