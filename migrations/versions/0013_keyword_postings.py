"""Keyword postings: BM25 reads the postings of the query's lexemes instead of every matching
tsvector, and writes pay nothing for them.

- ``memory_terms`` (namespace, lexeme, memory_id, tf, dl): one row per lexeme of a memory's
  indexed text, its term frequency and the memory's length in lexemes, keyed in that order so a
  query reads each of its lexemes as one index range, and ``tf`` and ``dl`` are in the index
  too: a lexeme's postings lie on as many heap pages as it has memories (they are written
  memory by memory), and reading them through the heap cost 1,299 page reads for 1,413
  postings (65 ms cold) where the index alone reads them in 0.5 ms (SciFact). Co-located with
  ``memories`` by namespace on Citus (no foreign key: the triggers below keep it, see why).
- ``memories.terms_indexed``: the row's postings are in ``memory_terms``. Rows arrive unflagged;
  the worker moves the rows of large namespaces in the background (``background/postings.py``),
  as the indexer does for the graph, and recall reads the tsvectors of the rows not moved yet,
  through ``memories_unposted_namespace``.
- ``memories_drop_terms`` (before an update of the text of a moved row) and
  ``memories_drop_terms_deleted`` (after the delete of one): a moved memory whose text changes
  loses its postings and its flag in the same statement (the worker moves it again), and a
  forgotten or swept one its postings. They fire only for moved rows, so ``remember`` pays
  nothing. A cascading foreign key would need a second index on the table, by memory, paid on
  every posting the worker writes; the trigger deletes through the primary key by the old
  text's lexemes instead.

Keeping the postings in the writing transaction cost 30-56 % of the write rate
(``benchmarks/keyword_postings.py``, benchmarks/RESULTS.md), hence the background.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgrecall.db import distribute
from pgrecall.db.schema import MEMORY_TERMS

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The postings of a memory's old text, found through the primary key by its lexemes.
_DROP_TERMS = f"""
CREATE FUNCTION pgrecall_drop_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {MEMORY_TERMS}
    WHERE namespace = OLD.namespace AND lexeme = ANY(tsvector_to_array(OLD.search))
      AND memory_id = OLD.id;
    IF TG_OP = 'UPDATE' THEN
        NEW.terms_indexed := false;
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$$
"""

_TRIGGERS = (
    """
    CREATE TRIGGER memories_drop_terms
    BEFORE UPDATE OF content, search_text ON memories
    FOR EACH ROW
    WHEN (OLD.terms_indexed AND (OLD.content IS DISTINCT FROM NEW.content
                                 OR OLD.search_text IS DISTINCT FROM NEW.search_text))
    EXECUTE FUNCTION pgrecall_drop_terms()
    """,
    """
    CREATE TRIGGER memories_drop_terms_deleted
    AFTER DELETE ON memories
    FOR EACH ROW
    WHEN (OLD.terms_indexed)
    EXECUTE FUNCTION pgrecall_drop_terms()
    """,
)


def upgrade() -> None:
    op.add_column(
        "memories",
        sa.Column("terms_indexed", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "memories_unposted_namespace",
        "memories",
        ["namespace"],
        postgresql_where=sa.text("NOT terms_indexed"),
    )
    op.execute(
        f"""
        CREATE TABLE {MEMORY_TERMS} (
            namespace text NOT NULL,
            lexeme text NOT NULL,
            memory_id uuid NOT NULL,
            tf integer NOT NULL,
            dl integer NOT NULL,
            CONSTRAINT memory_terms_pkey PRIMARY KEY (namespace, lexeme, memory_id)
                INCLUDE (tf, dl)
        )
        """
    )
    distribute.distribute_tables(op.get_bind())
    op.execute(_DROP_TERMS)
    for trigger in _TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    op.execute("DROP TRIGGER memories_drop_terms_deleted ON memories")
    op.execute("DROP TRIGGER memories_drop_terms ON memories")
    op.execute("DROP FUNCTION pgrecall_drop_terms()")
    op.drop_table(MEMORY_TERMS)
    op.drop_index("memories_unposted_namespace", table_name="memories")
    op.drop_column("memories", "terms_indexed")
