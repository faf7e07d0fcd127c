"""Compacting the indexes of ``memories`` after a switch of embedding space.

A move (``switch._MOVE_IN``, an UPDATE of every row) writes a new version of every memory, and
every index of ``memories`` gets an entry for it; VACUUM then frees the old entries but leaves
the pages half-empty. Keyword recall read ~12% more buffers after any move (87.4 -> 98.2 a
query at 20 namespaces x 1,000: the GIN index 11 -> 16, the namespace btree 10 -> 14), and came
out 1.10-1.11x the first space's copy in switch_cost's case (b) (benchmarks/RESULTS.md, issue
21, session 12). ``compact`` rebuilds each of those indexes with ``REINDEX INDEX CONCURRENTLY``,
one at a time: it never blocks readers or writers, and runs outside a transaction. Measured
with it (RESULTS.md, session 13): keyword recall's statements read 83 buffers after a move,
against 94 without it and 87 in the first space; 3-9 s at 100,000 memories.

The order of the rebuilds matters. Each REINDEX CONCURRENTLY gives its index a new OID, and the
planner weighs a table's indexes newest OID first, keeping the first of two paths of equal
cost. Ingest's lookup of a namespace the statistics have not seen yet (``FIND_EXISTING``: one
row estimated for it) costs the same through ``memories_pkey`` (namespace only, content_hash
filtered) as through ``memories_namespace_content_hash_key``; rebuilt in the order of their
names, the primary key came out newer and won, and each of a call's 1,000 probes read every
row of the new namespace written so far: the first bulk import after a switch ran at
0.22-0.28x the first space's copy at 100,000 memories in one namespace, until autoanalyze saw
the namespace (scratch A/B at 30,000, seconds a call of 1,000: 0.37 / 0.53 / 0.80 / 0.13 /
0.11 rebuilt by name, 0.16 / 0.18 / 0.11 / 0.12 / 0.14 rebuilt in this order, 0.28 / 0.17 /
0.12 / 0.12 / 0.10 not compacted; a plain REINDEX, which keeps the OIDs, was not slower, nor
was the fill factor or a checkpoint the cause; benchmarks/RESULTS.md, issue 21, session 14).

The HNSW graph is left alone: the switch builds it again (``Indexer.catch_up(rebuild=True)``).

A REINDEX CONCURRENTLY that is killed (the process, the connection) leaves an invalid index
behind: ``<name>_ccnew`` if it stopped before the swap, ``<name>_ccold`` after it. Recall
ignores it but every write still pays for it while it is ready, so ``compact`` drops those
first; running it again after a kill is safe and finishes the job.

On Citus, REINDEX of a distributed table's index is run on every shard (Citus 14,
``commands/index.c``: one task per shard, each outside a transaction when CONCURRENTLY); the
coordinator's catalog shows only its own leftovers, so those on the workers are looked up and
dropped shard by shard (``run_command_on_shards``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.errors import database_errors
from pgrecall.db.inspect import on_citus
from pgrecall.db.schema import HNSW_INDEX, MEMORIES

_Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# pg_advisory_lock key held while compacting, so two compactions run one after the other and
# neither takes the other's index being built for a leftover: ASCII "pgcx".
COMPACT_LOCK_KEY = 0x70676378
# What PostgreSQL names the index a REINDEX CONCURRENTLY builds, and the one it replaces
# (ChooseRelationName: a number is appended when the name is taken).
_LEFTOVER_NAME = r"_cc(new|old)[0-9]*$"
_LEFTOVERS = f"""
    SELECT format('%I', c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = '{MEMORIES}'::regclass AND NOT i.indisvalid
      AND c.relname ~ '{_LEFTOVER_NAME}'
    ORDER BY c.relname
"""
# The order of the rebuilds decides which index wins a tie in the planner (see the module's
# docstring): the lookup indexes of a text or key (unique, not the primary key) are rebuilt
# last, so they come out with the newest OIDs and win, as in a store made by the migrations.
# The rest keep their order among themselves. Decided by kind, not by what a killed
# compaction left, so a re-run ends in the same order.
_INDEXES = f"""
    SELECT format('%I', c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = '{MEMORIES}'::regclass AND i.indisvalid AND c.relname <> $1
    ORDER BY i.indisunique AND NOT i.indisprimary, i.indexrelid
"""
# On Citus, the leftovers of each shard of memories (%s: the shard's name), dropped there.
_SHARD_LEFTOVERS = f"""
    SELECT coalesce(string_agg(format('%%I', c.relname), ','), '')
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = '%s'::regclass AND NOT i.indisvalid AND c.relname ~ '{_LEFTOVER_NAME}'
"""
_ON_SHARDS = f"SELECT result FROM run_command_on_shards('{MEMORIES}', $1) WHERE success"


@dataclass(frozen=True, slots=True)
class Compaction:
    """What ``compact`` did: the leftovers of an interrupted compaction it dropped, the indexes
    it rebuilt, and how long it took."""

    dropped: tuple[str, ...]
    rebuilt: tuple[str, ...]
    seconds: float


# Called before each index is rebuilt (indexes done, indexes in all, the next one's name), and
# once at the end (all done, "").
Progress = Callable[[int, int, str], None]


async def compact(pool: asyncpg.Pool, progress: Progress | None = None) -> Compaction:
    """Drop the leftovers of an interrupted compaction, then rebuild every index of
    ``memories`` but the graph, one at a time, without blocking readers or writers."""
    started = time.perf_counter()
    with database_errors():
        async with pool.acquire() as connection:
            await connection.execute("SELECT pg_advisory_lock($1)", COMPACT_LOCK_KEY)
            try:
                dropped = [row[0] for row in await connection.fetch(_LEFTOVERS)]
                for name in dropped:
                    await connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                if await on_citus(connection):
                    await _drop_shard_leftovers(connection)
                indexes = [row[0] for row in await connection.fetch(_INDEXES, HNSW_INDEX)]
                for done, name in enumerate(indexes):
                    if progress is not None:
                        progress(done, len(indexes), name)
                    await connection.execute(f"REINDEX INDEX CONCURRENTLY {name}")
                if progress is not None:
                    progress(len(indexes), len(indexes), "")
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", COMPACT_LOCK_KEY)
    return Compaction(tuple(dropped), tuple(indexes), time.perf_counter() - started)


async def _drop_shard_leftovers(connection: _Connection) -> None:
    """Drop, on each shard of memories, the invalid indexes a killed REINDEX left there."""
    for (names,) in await connection.fetch(_ON_SHARDS, _SHARD_LEFTOVERS):
        for name in filter(None, names.split(",")):
            # Each shard's command runs on its own worker connection, outside a transaction.
            await connection.fetch(_ON_SHARDS, f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
