"""Keyword postings' document count: BM25's N read from a row instead of counted.

BM25 over a large namespace counted the namespace's memories on every query (its N): an
index-only scan of the namespace btree, 0.7 ms for SciFact's 5,183 abstracts, growing with the
namespace, and a read of every heap page (4,411 for SciFact, 4.9 ms) whenever the visibility map
is not set, as after a VACUUM FULL or many writes. Replacing it by a stored count took the keyword
statement to 0.82-0.87x (benchmarks/RESULTS.md, issue 25).

- ``memory_term_counts`` (namespace, documents): how many memories of the namespace have their
  postings in ``memory_terms`` (``terms_indexed``). N is that plus the namespace's rows not moved
  yet, counted through ``memories_unposted_namespace`` (few: the rows written since the
  worker's last sweep), so it equals the namespace's count at every moment. Co-located with
  ``memories`` on Citus.
- The worker's mover adds each batch's rows (background/postings.py); ``pgrecall_drop_terms``
  (the triggers of 0013, which fire only for moved rows) now also takes one off when a moved
  memory is deleted or its text changes (it is then an unmoved row until moved again).
- Filled here from the rows already moved.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from pgrecall.db import distribute
from pgrecall.db.schema import MEMORY_TERM_COUNTS, MEMORY_TERMS

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _drop_terms(uncount: str) -> str:
    """The triggers' function: a moved row's postings dropped by its old text's lexemes (through
    the primary key), then ``uncount``."""
    return f"""
CREATE OR REPLACE FUNCTION pgrecall_drop_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {MEMORY_TERMS}
    WHERE namespace = OLD.namespace AND lexeme = ANY(tsvector_to_array(OLD.search))
      AND memory_id = OLD.id;
    {uncount}
    IF TG_OP = 'UPDATE' THEN
        NEW.terms_indexed := false;
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE {MEMORY_TERM_COUNTS} (
            namespace text NOT NULL,
            documents bigint NOT NULL,
            CONSTRAINT memory_term_counts_pkey PRIMARY KEY (namespace)
        )
        """
    )
    distribute.distribute_tables(op.get_bind())
    op.execute(
        f"""
        INSERT INTO {MEMORY_TERM_COUNTS} (namespace, documents)
        SELECT namespace, count(*) FROM memories WHERE terms_indexed GROUP BY namespace
        """
    )
    op.execute(
        _drop_terms(
            f"UPDATE {MEMORY_TERM_COUNTS} SET documents = documents - 1 "
            "WHERE namespace = OLD.namespace;"
        )
    )


def downgrade() -> None:
    op.execute(_drop_terms(""))
    op.drop_table(MEMORY_TERM_COUNTS)
