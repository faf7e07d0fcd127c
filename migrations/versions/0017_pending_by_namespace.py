"""The pending memories of a namespace, read from a partial index of their own.

Every recall counts the pending memories in its scope (``recall.sql.statement``). The only
index of pending rows was the worker's queue, ``memories_pending_queue`` (embed_after), across
namespaces, so the count read every pending row of the store and kept its namespace's: with
the memories written after a switch pending again after a rollback (60,600 in switch_cost's
case (a) at 100k, no worker running), recall of the 100,000-row namespace beside them took
6.6-7.2x its copy's time in every mode (2,010 pending rows: 2.4 ms a statement;
benchmarks/RESULTS.md, issue 21, session 17). Any namespace's backlog slowed every other's
recall the same way.

- ``memories_pending_namespace`` (namespace) over the rows with ``status = 'pending'``: the
  count reads its namespace's entries alone. A memory stored embedded adds no entry; one stored
  pending, one entry, until VACUUM after it is embedded.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "memories_pending_namespace",
        "memories",
        ["namespace"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("memories_pending_namespace", table_name="memories")
