"""``pgrecall_text_config()`` names its text-search configuration with its schema.

The generated ``search`` column calls it for every row written. Logical replication's apply
workers run with an empty ``search_path``, so the unqualified name of 0004 did not resolve
there: on Citus, the shard moves of the rebalancer (logical replication onto the new worker)
failed on every row, retried every 5 s, and never finished. The schema-qualified name resolves
under any ``search_path``; the configuration itself is unchanged.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_NAMED = """
    SELECT n.nspname, c.cfgname FROM pg_ts_config c
    JOIN pg_namespace n ON n.oid = c.cfgnamespace
    WHERE c.oid = pgrecall_text_config()
"""


def _define(qualified: bool) -> None:
    schema, name = op.get_bind().execute(sa.text(_NAMED)).one()
    # Both names come from the catalog and are quoted by quote_ident: safe in the DDL.
    quoted = (
        op.get_bind()
        .execute(
            sa.text("SELECT quote_ident(:schema) || '.' || quote_ident(:name), quote_ident(:name)"),
            {"schema": schema, "name": name},
        )
        .one()
    )
    text = (quoted[0] if qualified else quoted[1]).replace("'", "''")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION pgrecall_text_config() RETURNS regconfig
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT '{text}'::regconfig $$
        """
    )


def upgrade() -> None:
    _define(qualified=True)


def downgrade() -> None:
    _define(qualified=False)
