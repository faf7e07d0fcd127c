"""The vector copier: copies the vectors of large namespaces' memories into ``memory_vectors``,
in the background, so their exact scan reads a narrow relation.

A long memory's row fills a page (migration 0006 keeps its text, tsvector and vector inline),
and the exact scan reads every page of its namespace; the same distances read from a relation
of the vectors alone cost 0.45x on SciFact (migration 0014, benchmarks/RESULTS.md). Writing the
copy in the remembering transaction would put a second row on every write, so ``remember``
writes none: rows arrive unflagged (``vector_copied`` false), and this copier, as the postings
mover does for keywords, takes a batch of a large namespace's unflagged embedded rows (``SKIP
LOCKED``, so several workers share the work), copies their vectors and flags them, in one
statement. Recall scans the rows not copied yet from ``memories`` beside the copies, so a new
memory is found at once. Triggers on ``memories`` drop a copy when its row's vector or space
changes (and the flag, so it is copied again) or when the row is deleted.
"""

from __future__ import annotations

from pgrecall.background.movers import BatchMover, large_with_backlog

# Every reference names the namespace ($1): on Citus the statement runs on its shard alone. A
# copy left by a row whose flag was reset outside the triggers is replaced, never doubled, and
# marked as written now (``copied_by``: the insert's default, since Citus refuses a function in
# DO UPDATE SET), so the processes' caches of the namespace's copies read it again
# (recall/vector_cache.py).
_COPY_BATCH = """
    WITH batch AS (
        SELECT namespace, id, space_id, embedding FROM memories
        WHERE namespace = $1 AND NOT vector_copied AND embedding IS NOT NULL
        LIMIT $2 {locking}
    ), copied AS (
        INSERT INTO memory_vectors (namespace, id, space_id, embedding)
        SELECT namespace, id, space_id, embedding FROM batch
        ON CONFLICT (namespace, id)
        DO UPDATE SET space_id = EXCLUDED.space_id, embedding = EXCLUDED.embedding,
                      copied_by = EXCLUDED.copied_by
    )
    UPDATE memories m SET vector_copied = true
    FROM batch b
    WHERE m.namespace = $1 AND m.namespace = b.namespace AND m.id = b.id
"""


class VectorCopier(BatchMover):
    """Copies the vectors of large namespaces' memories and flags them ``vector_copied``."""

    backlog_sql = large_with_backlog("NOT vector_copied AND embedding IS NOT NULL")
    batch_sql = _COPY_BATCH
    what = "vectors copied into memory_vectors"

    def min_rows(self) -> int:
        return self._settings.vector_copy_min_rows

    def batch_size(self) -> int:
        return self._settings.vector_copy_batch_size
