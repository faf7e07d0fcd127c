"""Scope exclusions: a namespace's memories out of recall's scope read from two small indexes.

Recall's exact plans over the vector copies and the keyword postings (issue 25) checked each
candidate's scope (expiry, current validity) by a primary-key probe into ``memories``, whose
long rows fill a page each: ~100-200 probes per hybrid recall on SciFact. A namespace's
memories out of that scope are those expired and not swept yet and those whose validity has
ended: few, and on most namespaces none. These partial indexes hold only the rows with an
expiry or an end of validity, ordered by it within their namespace, so the ids out of scope are
one index range each (``recall.sql.scope_exclusions``) and candidates are anti-joined to them.

- ``memories_namespace_expiry`` (namespace, expires_at) INCLUDE (id), rows with an expiry
  (the sweeper's ``memories_expiry`` is across namespaces, for finding due namespaces).
- ``memories_namespace_valid_until`` (namespace, valid_until) INCLUDE (id), rows with an end
  of validity.

A write of a memory without either adds nothing; with one, an index entry.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_INDEXES = {
    "memories_namespace_expiry": "expires_at",
    "memories_namespace_valid_until": "valid_until",
}


def upgrade() -> None:
    for name, column in _INDEXES.items():
        op.create_index(
            name,
            "memories",
            ["namespace", column],
            postgresql_include=["id"],
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="memories")
