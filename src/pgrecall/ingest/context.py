"""Contextual indexing: a memory indexed with the memories just before it in its thread.

``PGRECALL_CONTEXT_KEY`` (default ``session``; empty: off) names a metadata key that says which
thread a memory belongs to (a session, a conversation, a ticket); a memory whose metadata holds
it is embedded and keyword-indexed as the indexed texts of the ``PGRECALL_CONTEXT_WINDOW``
memories before it in the same namespace and thread (oldest first, one a line), then its own.
The content is stored and returned as given. "Before" is the order of remembering: rows of the
thread created earlier (by ``created_at``, then id, which grows within a process), then the
items before it in the same call. A memory remembered again keeps the context it had: only rows
older than its own row, and none of the call's own memories, count from the table. Memories
without the key cost nothing more.

Why: in a dialogue the answer often sits in a turn that shares nothing with the question, next
to the turn that does ("Yes, last Friday!" after "Did you go to Lisbon?"). On LoCoMo-dev's first
conversation (benchmarks/locomo.py; 419 turns, 197 questions) a window of one turn took hybrid
hit@10 from 0.716 (the ``auto`` template alone) to 0.822, and over all five conversations
(2,760 turns, 997 questions) from 0.717 to 0.796; see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from pgrecall.background.expiry import unexpired
from pgrecall.db.errors import database_errors
from pgrecall.ingest.prepare import Prepared
from pgrecall.ingest.templates import TextTemplates

# One row per memory of one namespace ($1) that names a thread: up to $7 rows of its thread
# before it. One statement per namespace, the namespace a single value: on Citus a statement
# whose every read of memories names one namespace runs on that namespace's shard, whatever it
# holds (with the namespaces unnested, Citus refused the lateral subqueries: "cannot push down
# this subquery"); on plain PostgreSQL a call's memories are nearly always of one namespace.
_BEFORE = f"""
    SELECT w.i, c.content, c.metadata::text AS metadata
    FROM unnest($2::jsonb[], $3::bytea[], $4::text[], $5::timestamptz[], $6::uuid[])
         WITH ORDINALITY AS w(thread, hash, key, at, id, i)
    LEFT JOIN LATERAL (
        SELECT e.created_at, e.id FROM memories e
        WHERE e.namespace = $1 AND w.at IS NULL
          AND ((w.key IS NOT NULL AND e.key = w.key)
               OR (w.key IS NULL AND e.key IS NULL AND e.content_hash = w.hash))
    ) AS own ON TRUE
    CROSS JOIN LATERAL (
        SELECT m.content, m.metadata, m.created_at, m.id FROM memories m
        WHERE m.namespace = $1 AND m.metadata @> w.thread AND {unexpired("m")}
          AND (coalesce(w.at, own.created_at) IS NULL
               OR (m.created_at, m.id) < (coalesce(w.at, own.created_at), coalesce(w.id, own.id)))
          AND NOT (m.key IS NULL AND m.content_hash = ANY($8::bytea[]))
          AND NOT (m.key IS NOT NULL AND m.key = ANY($9::text[]))
        ORDER BY m.created_at DESC, m.id DESC
        LIMIT $7
    ) AS c
    ORDER BY w.i, c.created_at, c.id
"""


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """Which metadata key names a memory's thread, and how many memories before it count."""

    key: str
    size: int

    def identity(self, templates: TextTemplates) -> str:
        """The space's text identity: the templates' plus this window."""
        return json.dumps(
            {"templates": templates.identity(), "context": self.key, "window": self.size},
            sort_keys=True,
        )


def has_context(identity: str) -> bool:
    """Whether a recorded text identity (``ContextWindow.identity``) includes a context."""
    try:
        recorded = json.loads(identity)
    except ValueError:
        return False
    return isinstance(recorded, dict) and "context" in recorded


@dataclass(frozen=True, slots=True)
class Threaded:
    """A memory to index with its context; ``before`` bounds the rows that precede it (its own
    row's ``created_at`` and id when known, e.g. on update; None: found by its identity)."""

    namespace: str
    content: str
    metadata: dict[str, Any]
    content_hash: bytes
    key: str | None
    before: tuple[datetime, UUID] | None = None


def thread_of(metadata: dict[str, Any], key: str) -> str | None:
    """The containment filter (JSON) that selects the memory's thread, or None for none."""
    value = metadata.get(key)
    if value is None or isinstance(value, dict | list):
        return None
    return json.dumps({key: value})


async def indexed_texts(
    pool: asyncpg.Pool,
    templates: TextTemplates,
    window: ContextWindow,
    memories: Sequence[Threaded],
) -> list[str | None]:
    """Each memory's indexed text with its context (None: the content itself, no context)."""
    own = [templates.render(m.namespace, m.content, m.metadata) for m in memories]
    threads = [thread_of(m.metadata, window.key) for m in memories]
    named = [i for i, thread in enumerate(threads) if thread is not None]
    if not named:
        return own
    # Only the first ``window.size`` memories of each thread in the call can reach stored
    # rows: the context of a later one is made of the call's own earlier memories. A session
    # written in one call costs one lookup, not one per turn (calls of 100 turns: context cost
    # remember 64% more without this, see benchmarks/RESULTS.md).
    seen: dict[tuple[str, str], int] = defaultdict(int)
    by_namespace: dict[str, list[int]] = defaultdict(list)
    for i in named:
        thread = (memories[i].namespace, threads[i] or "")
        if seen[thread] < window.size:
            by_namespace[memories[i].namespace].append(i)
        seen[thread] += 1
    stored: dict[int, list[str]] = defaultdict(list)
    for namespace, positions in by_namespace.items():
        bounds = [memories[i].before for i in positions]
        with database_errors():
            rows = await pool.fetch(
                _BEFORE,
                namespace,
                [threads[i] for i in positions],
                [memories[i].content_hash for i in positions],
                [memories[i].key for i in positions],
                [bound[0] if bound else None for bound in bounds],
                [bound[1] if bound else None for bound in bounds],
                window.size,
                [m.content_hash for m in memories if m.key is None],
                [m.key for m in memories if m.key is not None],
            )
        for row in rows:
            position = positions[row["i"] - 1]
            metadata = json.loads(row["metadata"])
            rendered = templates.render(namespace, row["content"], metadata)
            stored[position].append(rendered or row["content"])
    earlier: dict[tuple[str, str], list[str]] = defaultdict(list)
    texts: list[str | None] = list(own)
    for i in named:
        memory = memories[i]
        thread = (memory.namespace, threads[i] or "")
        context = (stored[i] + earlier[thread])[-window.size :]
        mine = own[i] or memory.content
        earlier[thread].append(mine)
        if context:
            texts[i] = "\n".join([*context, mine])
    return texts


async def with_context(
    pool: asyncpg.Pool,
    templates: TextTemplates,
    window: ContextWindow,
    prepared: Sequence[Prepared],
) -> list[Prepared]:
    """``prepared`` memories (of one ``remember`` call, in order) with their context added to
    the indexed text; validation already passed, so nothing here refuses an item."""
    memories = [
        Threaded(p.namespace, p.content, json.loads(p.metadata), p.content_hash, p.key)
        for p in prepared
    ]
    texts = await indexed_texts(pool, templates, window, memories)
    return [p._replace(search_text=text) for p, text in zip(prepared, texts, strict=True)]
