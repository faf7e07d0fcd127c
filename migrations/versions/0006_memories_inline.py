"""Keep a memory's row in one piece: ``toast_tuple_target`` at its maximum.

A 384-d vector alone takes 1.5 kB of the ~2 kB after which PostgreSQL moves a row's largest
values (the tsvector, the content) out of line; a few dozen bytes of metadata tipped typical
memories over it, and every recall then paid three extra page reads per memory to read the
tsvector back (measured: hybrid recall 7.7 -> 5.6 ms on 1,000-memory namespaces). With the
target at 8,160 bytes only rows larger than a page are toasted. Rows already written keep their
layout until they are updated.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE memories SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    op.execute("ALTER TABLE memories RESET (toast_tuple_target)")
