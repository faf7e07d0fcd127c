"""Vector copies: the exact scan of a large namespace reads a narrow relation of its vectors
instead of the memories' long rows, and writes pay nothing for it.

- ``memory_vectors`` (namespace, id, space_id, embedding): a copy of a memory's vector and its
  space. The exact scan's cost is its page reads: a SciFact row (content, tsvector and vector,
  ~5 kB, inline since 0006) fills a page alone, and the same 5,183 distances cost 0.45x read
  from a relation of the vectors alone (1,088 pages against 4,631; benchmarks/exact_scan.py,
  benchmarks/RESULTS.md, issue 25). The vector stays in the row (``STORAGE MAIN`` and a tuple
  target of a page, as 0006 does for memories): out of line, every row would cost a TOAST
  read. Co-located with ``memories`` by namespace on Citus (no foreign key: the triggers below
  keep it, as 0013's do for the postings).
- ``memories.vector_copied``: the row's vector is in ``memory_vectors``. Rows arrive unflagged;
  the worker copies the vectors of large namespaces in the background
  (``background/copies.py``), and recall scans the rows not copied yet from ``memories``,
  through ``memories_uncopied_vectors``, so a new memory is found at once.
- ``memories_drop_vector`` (before an update that changes a copied row's vector or space: an
  update of its text, the worker, a model switch or rollback) and
  ``memories_drop_vector_deleted`` (after the delete of one): the copy goes in the same
  statement, and the flag too (the worker copies the new vector again). They fire only for
  copied rows, so ``remember`` pays nothing.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgrecall.db import distribute
from pgrecall.db.schema import MEMORY_VECTORS

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_DROP_VECTOR = f"""
CREATE FUNCTION pgrecall_drop_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {MEMORY_VECTORS} WHERE namespace = OLD.namespace AND id = OLD.id;
    IF TG_OP = 'UPDATE' THEN
        NEW.vector_copied := false;
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$$
"""

_TRIGGERS = (
    """
    CREATE TRIGGER memories_drop_vector
    BEFORE UPDATE OF embedding, space_id ON memories
    FOR EACH ROW
    WHEN (OLD.vector_copied AND (OLD.space_id IS DISTINCT FROM NEW.space_id
                                 OR OLD.embedding IS DISTINCT FROM NEW.embedding))
    EXECUTE FUNCTION pgrecall_drop_vector()
    """,
    """
    CREATE TRIGGER memories_drop_vector_deleted
    AFTER DELETE ON memories
    FOR EACH ROW
    WHEN (OLD.vector_copied)
    EXECUTE FUNCTION pgrecall_drop_vector()
    """,
)


def upgrade() -> None:
    op.add_column(
        "memories",
        sa.Column("vector_copied", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "memories_uncopied_vectors",
        "memories",
        ["namespace"],
        postgresql_where=sa.text("NOT vector_copied AND embedding IS NOT NULL"),
    )
    op.execute(
        f"""
        CREATE TABLE {MEMORY_VECTORS} (
            namespace text NOT NULL,
            id uuid NOT NULL,
            space_id integer NOT NULL,
            embedding vector NOT NULL,
            CONSTRAINT memory_vectors_pkey PRIMARY KEY (namespace, id)
        ) WITH (toast_tuple_target = 8160)
        """
    )
    op.execute(f"ALTER TABLE {MEMORY_VECTORS} ALTER COLUMN embedding SET STORAGE MAIN")
    distribute.distribute_tables(op.get_bind())
    op.execute(_DROP_VECTOR)
    for trigger in _TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    op.execute("DROP TRIGGER memories_drop_vector_deleted ON memories")
    op.execute("DROP TRIGGER memories_drop_vector ON memories")
    op.execute("DROP FUNCTION pgrecall_drop_vector()")
    op.drop_table(MEMORY_VECTORS)
    op.drop_index("memories_uncopied_vectors", table_name="memories")
    op.drop_column("memories", "vector_copied")
