"""The postings mover: writes the keyword postings of large namespaces' memories, in the
background.

BM25 over a large namespace reads ``memory_terms`` (namespace, lexeme, memory, tf, dl) for the
query's lexemes instead of every matching tsvector (migration 0013, ``recall.sql``). Writing
the postings in the remembering transaction cost 30-56 % of the write rate
(``benchmarks/keyword_postings.py``), so ``remember`` writes none: rows arrive unflagged
(``terms_indexed`` false), and this mover, as the indexer does for the graph, takes a batch of
a large namespace's unflagged rows (``SKIP LOCKED``, so several workers share the work), writes
their postings from their tsvectors, flags them and adds them to the namespace's count of moved
rows (``memory_term_counts``, BM25's N, migration 0015), in one statement. Recall reads the
tsvectors of the rows not moved yet beside the postings, so a new memory is found at once.
Triggers on ``memories`` drop a moved row's postings and take it off the count when its text
changes (and its flag, so it is moved again) or when it is deleted.
"""

from __future__ import annotations

from pgrecall.background.movers import BatchMover, large_with_backlog

# Every reference names the namespace ($1): on Citus the statement runs on its shard alone.
_MOVE_BATCH = """
    WITH batch AS (
        SELECT namespace, id, search FROM memories
        WHERE namespace = $1 AND NOT terms_indexed
        LIMIT $2 {locking}
    ), posted AS (
        INSERT INTO memory_terms (namespace, lexeme, memory_id, tf, dl)
        SELECT b.namespace, t.lexeme, b.id, cardinality(t.positions), length(b.search)
        FROM batch b, unnest(b.search) AS t
    ), counted AS (
        INSERT INTO memory_term_counts AS c (namespace, documents)
        SELECT $1, count(*) FROM batch HAVING count(*) > 0
        ON CONFLICT (namespace) DO UPDATE SET documents = c.documents + excluded.documents
    )
    UPDATE memories m SET terms_indexed = true
    FROM batch b
    WHERE m.namespace = $1 AND m.namespace = b.namespace AND m.id = b.id
"""


class PostingsMover(BatchMover):
    """Writes the postings of large namespaces' memories and flags them ``terms_indexed``."""

    backlog_sql = large_with_backlog("NOT terms_indexed")
    batch_sql = _MOVE_BATCH
    what = "postings moved into memory_terms"

    def min_rows(self) -> int:
        return self._settings.keyword_postings_min_rows

    def batch_size(self) -> int:
        return self._settings.keyword_postings_batch_size
