"""Compacting the heap of ``memories`` after its rows were all written again.

A move of embedding space (``switch._MOVE_IN``) and the graph's flags (``indexer``) each
UPDATE every row they touch in one statement, so no new version can take an old one's place:
the new versions go to the end of the heap, and VACUUM frees the old ones' pages but keeps
them. After a switch and a rollback the heap held 84,282 pages for the 43,208 of the same rows
never moved (case (b) at 100,000 memories), and the planner prices plans by the heap's pages:
there the keyword statement's generic plan cost 1,415 against its custom plans' 938, so
PostgreSQL planned every call afresh (0.55 ms) into a plan slower than the generic one, and
keyword recall ran 1.40-1.50x the unmoved copy's (benchmarks/RESULTS.md, issue 21, session 15).
Compacted, the heap came back to the copy's pages and hybrid recall in (b) to within 10%, but
keyword still tipped in one state (session 16): generic plans, forced where they fit, level it
(``db/plan_cache.py``, session 17).

``compact_heap`` moves the rows past the pages they need into the free pages before, in the
primary key's order, then lets VACUUM cut off the emptied end:

1. VACUUM, so the free space map knows the freed pages. Nothing is moved while a snapshot
   older than the move holds its dead rows: VACUUM is tried again after ``_CUT_WAITS`` (an
   autovacuum ANALYZE holds one for a moment: a CI run's rollback left 500 pages where 250
   were due), past them the compaction stops ("held").
2. The target: the pages the live rows fill at the median rows a page of the pages that hold
   any (rows larger than the median's fill the free pages first: step 3 stops there). Nothing
   is moved when the pages past it are fewer than VACUUM would cut off (a sixteenth of the
   heap, or 1,000 pages).
3. The rows on pages past the target, in (namespace, id) order, each batch (those among
   1,000 keys) in a transaction: written again unchanged (``status = status``: a column no
   trigger watches, so no version is kept and no postings or copies are dropped), by where
   they are (a TID scan), in one pass over the primary key. They land where the free
   space map says, from the heap's start, so a namespace's rows end up side by side and in
   the order of its index: the move had left them in its join's order, which the planner
   reads in ``pg_stats.correlation`` (0.9999 for the namespace before a move, 0.15-0.57
   after it, and -0.17 to -0.57 when this step moved pages from the end down, in a 20,000-row
   case (b)). PostgreSQL keeps a new version on its page when it fits there, so the rows that
   stayed are written once more in the same transaction, when their own versions have taken
   that room. When a batch's rows would land past the heap's end (the free pages are full:
   rows larger than the median page's), it is rolled back, and the rest is packed from the
   end down into the room the batches left past the target, a batch of pages at a time
   (halved when it does not fit, down to one page, where the compaction stops).
4. VACUUM: the emptied tail is cut off. Not while a snapshot older than the last batch holds
   the moved rows' old versions, or another transaction holds a lock on the table past
   VACUUM's 5 s: an autovacuum ANALYZE running meanwhile does both for a moment (it left 1,500
   pages where 751 were due in one CI run of 3,000 rows). So VACUUM is tried again after
   ``_CUT_WAITS``; past them the end stays until autovacuum, which the dead rows call, cuts it.

Readers see the same rows throughout; a writer waits only for a batch's rows. Every index
gets an entry for each moved row, so this runs while the graph is down
(``Indexer.catch_up(rebuild=True)``) and before the other indexes are rebuilt
(``compaction.compact``). Not on Citus: the coordinator's ``memories`` holds no rows of its
own.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.inspect import on_citus
from pgrecall.db.schema import MEMORIES

_Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# Rows a batch moves: a transaction of 1,000 rows holds their locks for ~0.2 s.
BATCH_ROWS = 1000
# Writes of a batch's rows within its transaction before a row still on its page is left
# there. Each write of a row that stays takes room and a line pointer on its page (the
# transaction's own dead versions cannot be pruned), so it leaves within as many writes as a
# page holds tuples (MaxHeapTuplesPerPage, 291 at 8 kB); most leave at the second.
_WRITES = 300
# How long a batch waits for a row another transaction holds (a writer, a deadlock cycle
# with one) before it gives way: the compaction stops rather than hold the batch's rows.
LOCK_TIMEOUT = "1s"
LOCKED = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)
# Dead rows VACUUM could not remove (a snapshot older than the move holds them), as a share of
# the live rows, above which nothing is moved: the freed pages are not free yet.
_HELD_DEAD_SHARE = 0.01
# Why a compaction stopped where it did.
STOPPED = {
    "done": "the end is cut down to the pages the rows fill",
    "empty": "no rows",
    "compact": "already compact",
    "held": "dead rows are held by an older snapshot",
    "full": "the free pages are full",
    "stayed": "a row stayed on its page",
    "locked": "another transaction held a row",
    "uncut": "the rows moved; an older snapshot or a lock kept the end from being cut",
}
# Seconds waited before each VACUUM tried again when the first cut nothing off (step 4).
_CUT_WAITS = (0.25, 0.5, 1.0, 2.0)

# VACUUM cuts the empty end off only when it is at least this many pages, or this fraction of
# the heap (vacuumlazy.c: REL_TRUNCATE_MINIMUM, REL_TRUNCATE_FRACTION): a shorter end is left.
_TRUNCATE_MINIMUM = 1000
_TRUNCATE_FRACTION = 16

_HEAP_PAGES = f"SELECT pg_relation_size('{MEMORIES}') / current_setting('block_size')::int"
_HELD_DEAD = f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '{MEMORIES}'::regclass"
# The live rows, and the median of rows a page over the pages holding any.
_DENSITY = f"""
    SELECT coalesce(sum(live), 0)::bigint,
           coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY live), 0)::bigint
    FROM (SELECT count(*) AS live FROM {MEMORIES} GROUP BY (ctid::text::point)[0]) AS pages
"""
# The next rows after the key ($1, $2) in the primary key's order, with where they are: a
# walk of the primary key, each batch from the last key on (filtered on the page in a
# condition, the plan scanned and sorted the whole table for each batch).
_NEXT_ROWS = f"""
    SELECT namespace, id, ctid FROM {MEMORIES}
    WHERE (namespace, id) > ($1, $2) ORDER BY namespace, id LIMIT $3
"""
# Rows written again unchanged, by where they are (a TID scan): where they are now.
_WRITE_ROWS = f"UPDATE {MEMORIES} SET status = status WHERE ctid = ANY($1::tid[]) RETURNING ctid"
# The rows on pages [$1, $2) written again unchanged: where they are now.
_WRITE_PAGES = f"""
    UPDATE {MEMORIES} SET status = status
    WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid
    RETURNING ctid
"""
# Before the first key: namespaces are never empty (validation.py).
_FIRST_KEY = ("", uuid.UUID(int=0))


async def heap_pages(connection: _Connection) -> int:
    """The pages of ``memories``' heap."""
    return int(await connection.fetchval(_HEAP_PAGES))


async def local_heap_pages(pool: asyncpg.Pool) -> int | None:
    """The pages of ``memories``' heap; None on Citus (the rows are in the workers' shards)."""
    async with pool.acquire() as connection:
        return None if await on_citus(connection) else await heap_pages(connection)


@dataclass(frozen=True, slots=True)
class HeapCompaction:
    """What ``compact_heap`` did: the heap's pages before and after, the rows it moved
    forward (a row packed from the end down twice counts twice), how long it took, and why it
    stopped where it did (``STOPPED``)."""

    pages_before: int
    pages_after: int
    moved: int
    seconds: float
    stopped: str


class _Stuck(Exception):
    """A batch's rows could not all leave their pages: the batch is rolled back (``full``: they
    found no free page before the heap's end; ``locked``) or kept (``stayed``)."""

    def __init__(self, reason: str, moved: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.moved = moved


async def compact_heap(connection: _Connection) -> HeapCompaction:
    """Move the rows at the end of ``memories``' heap into its free pages and cut the emptied
    end off (outside a transaction: it runs VACUUM)."""
    started = time.perf_counter()
    await connection.execute(f"VACUUM {MEMORIES}")
    before = await heap_pages(connection)
    moved, stopped, start = await _move_tail(connection, before)
    after = start
    if moved:
        after = await _cut(connection, start, retry=stopped == STOPPED["done"])
        if stopped == STOPPED["done"] and after >= start:
            stopped = STOPPED["uncut"]
    return HeapCompaction(before, after, moved, time.perf_counter() - started, stopped)


async def _cut(connection: _Connection, pages: int, *, retry: bool) -> int:
    """Step 4 of the docstring on a heap of ``pages``: VACUUM, again after each of
    ``_CUT_WAITS`` while it cut nothing off (when every row past the target moved:
    ``retry``); the pages after it."""
    after = pages
    for wait in (0.0, *(_CUT_WAITS if retry else ())):
        await asyncio.sleep(wait)
        await connection.execute(f"VACUUM {MEMORIES}")
        after = await heap_pages(connection)
        if after < pages:
            break
    return after


async def _released(connection: _Connection, rows: int) -> bool:
    """Whether the dead rows VACUUM could not remove are at most ``_HELD_DEAD_SHARE`` of the
    ``rows``: checked again after each of ``_CUT_WAITS``, each time after another VACUUM (the
    snapshot holding them may be a moment's: an autovacuum ANALYZE, a recall)."""
    for wait in (0.0, *_CUT_WAITS):
        if wait:
            await asyncio.sleep(wait)
            await connection.execute(f"VACUUM {MEMORIES}")
        if await connection.fetchval(_HELD_DEAD) <= rows * _HELD_DEAD_SHARE:
            return True
    return False


async def _move_tail(connection: _Connection, pages: int) -> tuple[int, str, int]:
    """Step 3 of the docstring on a heap of ``pages``: the rows moved, why it stopped, and the
    heap's pages it started from (fewer when a VACUUM run again while dead rows were held cut
    the end)."""
    rows, per_page = (await connection.fetch(_DENSITY))[0]
    if not rows:
        return 0, STOPPED["empty"], pages
    target = math.ceil(rows / per_page)
    if _compact(pages, target):
        return 0, STOPPED["compact"], pages
    released = await _released(connection, rows)
    pages = await heap_pages(connection)
    if not released:
        return 0, STOPPED["held"], pages
    if _compact(pages, target):
        return 0, STOPPED["compact"], pages
    moved, after = 0, _FIRST_KEY
    while True:
        rows = await connection.fetch(_NEXT_ROWS, *after, BATCH_ROWS)
        if not rows:
            return moved, STOPPED["done"], pages
        after = (rows[-1]["namespace"], rows[-1]["id"])
        where = [row["ctid"] for row in rows if row["ctid"][0] >= target]
        if not where:
            continue
        try:
            moved += await _written(connection, target, pages, _WRITE_ROWS, where)
        except _Stuck as stuck:
            moved += stuck.moved
            if stuck.reason != "full":
                return moved, STOPPED[stuck.reason], pages
            break
    # The free pages before the target are full (rows larger than the median page's): the
    # rest goes from the end down into the room the batches left past the target. VACUUM
    # first, for that room, and to cut off what the rolled-back batch added to the heap.
    await connection.execute(f"VACUUM {MEMORIES}")
    packed, stopped = await _pack_end(connection, await heap_pages(connection), target, per_page)
    return moved + packed, stopped, pages


def _compact(pages: int, target: int) -> bool:
    """Whether a heap of ``pages`` is too close to the ``target`` its rows fill for VACUUM to
    cut off what lies past it (``_TRUNCATE_MINIMUM``)."""
    return pages - target < min(_TRUNCATE_MINIMUM, pages / _TRUNCATE_FRACTION)


async def _pack_end(
    connection: _Connection, pages: int, target: int, per_page: int
) -> tuple[int, str]:
    """The rows of the heap's last pages, a batch of pages at a time from the end down to
    ``target``, written again into the room before them: the rows moved, and why it stopped."""
    moved, step, end = 0, max(1, BATCH_ROWS // per_page), pages
    while end > target:
        start = max(target, end - step)
        try:
            moved += await _written(connection, start, end, _WRITE_PAGES, start, end)
        except _Stuck as stuck:
            moved += stuck.moved
            if stuck.reason != "full":
                return moved, STOPPED[stuck.reason]
            if step == 1:
                return moved, STOPPED["full"]
            # The room holds part of a batch: narrow in on it. VACUUM first: the rolled-back
            # batch extended the heap, and this backend would go on filling those new pages
            # (its cached target page) until they are cut off again.
            await connection.execute(f"VACUUM {MEMORIES}")
            step //= 2
            continue
        end = start
    return moved, STOPPED["done"]


async def _written(
    connection: _Connection, start: int, end: int, statement: str, *values: object
) -> int:
    """Write rows on pages [``start``, ``end``) again by ``statement`` (``_WRITE_ROWS``,
    ``_WRITE_PAGES``), then those still there by where they are now, until none is; the rows
    that left. Raises ``_Stuck``: "full" or "locked" (the batch rolled back) when any landed
    at or past ``end`` or another transaction held one past ``LOCK_TIMEOUT``; "stayed" (the
    batch kept) when a row was still there after ``_WRITES`` writes."""
    moved = 0
    try:
        async with connection.transaction():
            await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            written = await connection.fetch(statement, *values)
            for write in range(1, _WRITES + 1):
                if any(row["ctid"][0] >= end for row in written):
                    raise _Stuck("full")
                stayed = [row["ctid"] for row in written if row["ctid"][0] >= start]
                moved += len(written) - len(stayed)
                if not stayed:
                    return moved
                if write == _WRITES:
                    break
                written = await connection.fetch(_WRITE_ROWS, stayed)
    except LOCKED:
        # Rolled back: another transaction holds a row (a deadlock's victim, or past the
        # timeout). Not retried: the compaction is an optimisation, and it stops here.
        raise _Stuck("locked") from None
    raise _Stuck("stayed", moved)
