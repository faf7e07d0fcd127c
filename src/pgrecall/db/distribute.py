"""Citus: distribute pgrecall's tables when the ``citus`` extension is installed.

``pgrecall migrate`` runs the migrations, then this step, in one transaction under the
migration lock (``migrations/env.py``); a migration that adds a foreign key to ``memories``
distributes the tables first (``distribute_tables``, see 0011). On a database without Citus it
does nothing.

- ``embedding_spaces`` (a few rows that every memory refers to) becomes a reference table: a
  copy on every node, so the foreign key and joins stay local to each shard.
- ``memories`` is distributed by ``namespace``: every key leads with it, so a namespace's
  memories live on one shard and each statement that names one namespace runs there alone.
  Further per-namespace tables (``memory_versions``, ``memory_audit``, ``space_vectors``,
  ``memory_terms``, ``memory_term_counts``, ``memory_vectors``) join ``DISTRIBUTED_TABLES`` and
  are co-located with it.
- The search settings go on the database (``ALTER DATABASE .. SET``, which Citus propagates to
  every node): the shards run the HNSW scans, and the settings a pool sets on its coordinator
  connections never reach them (measured on Citus 14: shards ran ``ef_search`` 40 and
  ``iterative_scan`` off under a pool asking for 64 and ``relaxed_order``).

Each step is idempotent: a table already distributed is left as it is, so ``migrate`` runs
again, and later migrations run on the distributed tables. DDL on a distributed table inside a
transaction that already changed it over several connections fails, so the transaction works
over one connection per node (``citus.multi_shard_modify_mode = sequential``, see ``prepare``).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from pgrecall.db.schema import (
    EMBEDDING_SPACES,
    MEMORIES,
    MEMORY_AUDIT,
    MEMORY_TERM_COUNTS,
    MEMORY_TERMS,
    MEMORY_VECTORS,
    MEMORY_VERSIONS,
    SPACE_VECTORS,
)

DISTRIBUTION_COLUMN = "namespace"
REFERENCE_TABLES = (EMBEDDING_SPACES,)
# Distributed by namespace, co-located with the first (a namespace's rows share a node), in
# this order: memory_versions' foreign key refers to memories.
DISTRIBUTED_TABLES = (
    MEMORIES,
    MEMORY_VERSIONS,
    MEMORY_AUDIT,
    SPACE_VECTORS,
    MEMORY_TERMS,
    MEMORY_VECTORS,
    MEMORY_TERM_COUNTS,
)


def citus_installed(connection: Connection) -> bool:
    """Whether this database has the ``citus`` extension."""
    found = connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'"))
    return found.scalar() is not None


def prepare(connection: Connection) -> None:
    """Before the migrations on Citus: one connection per node for this transaction, so DDL on
    distributed tables (the text-search dictionary of 0004 was the first to fail) can follow
    earlier changes to them in the same transaction."""
    if citus_installed(connection):
        connection.execute(text("SET LOCAL citus.multi_shard_modify_mode = 'sequential'"))
        # The version trigger of 0011 on memories: Citus creates it (and distributes a table
        # that has it) only when told; it runs on each shard and writes memory_versions of the
        # same namespace, whose shard is co-located on the same node.
        connection.execute(text("SET LOCAL citus.enable_unsafe_triggers = on"))


def _distribution(connection: Connection, table: str) -> str | None:
    """ "reference", "distributed", or None: local, or a Citus local table (what a table with a
    foreign key to a reference table becomes until it is distributed)."""
    row = connection.execute(
        text(
            "SELECT CASE WHEN p.partmethod = 'h' THEN 'distributed' "
            "            WHEN p.repmodel = 't' THEN 'reference' END "
            "FROM pg_dist_partition p WHERE p.logicalrelid = to_regclass(:table)"
        ),
        {"table": table},
    ).first()
    return str(row[0]) if row is not None and row[0] is not None else None


def _exists(connection: Connection, table: str) -> bool:
    found = connection.execute(text("SELECT to_regclass(:table)"), {"table": table})
    return found.scalar() is not None


def distribute_tables(connection: Connection) -> None:
    """On Citus: the reference tables, then the per-namespace tables that exist, co-located.

    Also called by a migration between creating a table and adding its foreign key to
    ``memories`` (0011): Citus refuses a foreign key from a local table to a distributed one,
    and distributing ``memories`` while a local table refers to it, so the tables are
    distributed first, on a new database as on an upgrade of a distributed one."""
    if not citus_installed(connection):
        return
    for table in REFERENCE_TABLES:
        if _exists(connection, table) and _distribution(connection, table) is None:
            connection.execute(text("SELECT create_reference_table(:table)"), {"table": table})
    colocate_with = "default"
    for table in DISTRIBUTED_TABLES:
        if not _exists(connection, table):
            continue
        if _distribution(connection, table) is None:
            connection.execute(
                text("SELECT create_distributed_table(:table, :column, colocate_with => :with)"),
                {"table": table, "column": DISTRIBUTION_COLUMN, "with": colocate_with},
            )
        colocate_with = table


def distribute(connection: Connection, hnsw_ef_search: int) -> None:
    """After the migrations on Citus: reference and distributed tables, search settings."""
    if not citus_installed(connection):
        return
    distribute_tables(connection)
    if _exists(connection, MEMORIES):
        search_settings(connection, hnsw_ef_search)


def search_settings(connection: Connection, hnsw_ef_search: int) -> None:
    """The HNSW settings recall needs, as this database's defaults on every node."""
    if isinstance(hnsw_ef_search, bool) or not isinstance(hnsw_ef_search, int):
        raise TypeError("hnsw_ef_search is an int")
    # ALTER DATABASE takes no parameters: the name is quoted by format(%I), the number is an int.
    connection.execute(
        text(
            f"""
            DO $$ BEGIN
                EXECUTE format('ALTER DATABASE %I SET hnsw.ef_search = {hnsw_ef_search:d}',
                               current_database());
                EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = relaxed_order',
                               current_database());
            END $$
            """
        )
    )
