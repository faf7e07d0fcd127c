"""Hybrid recall split in three statements: its two rankings at once on two connections, then
their fusion and the winners in a third, when the recall runs alone (``SplitGate``).

Hybrid's one statement runs its vector ranking and its keyword ranking one after the other on
one core; a one-client recall leaves the machine's other core idle. On SciFact's 5,183 abstracts
(benchmarks/RESULTS.md, issue 25) the two rankings took ~4.3 and ~4.8 ms of an 11.6 ms recall:
run at once they cost about the slower one. Three statements cost more CPU per recall than one
(two more round trips, the rankings carried to the third as arrays), so under load, where every
core already has a recall to run, the one statement stays.

The fusion keeps one home (``recall.sql.fused``): the third statement fuses the rankings the
first two returned, bound as arrays (``given_ranking``), with the same SQL as the one statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import asyncpg

from pgrecall.db.params import SqlParams
from pgrecall.recall.sql import (
    Fusion,
    RankedRows,
    Ranking,
    Scope,
    bound_rows,
    fused,
    fused_hits,
    statement,
)

# Connections a split recall holds at once: one per ranking.
SPLIT_CONNECTIONS = 2

T = TypeVar("T")
U = TypeVar("U")


async def alongside(started: Awaitable[T], work: Callable[[], Awaitable[U]]) -> tuple[T, U]:
    """``started``'s result and ``work()``'s, ``started`` set going first (a statement sent, a
    ranking in a worker thread) and ``work`` done while it runs. If ``work`` fails or the
    caller is cancelled, ``started`` is cancelled, and its own error is retrieved: the one
    raised is ``work``'s."""
    going = asyncio.ensure_future(started)
    try:
        await asyncio.sleep(0)  # ``started`` on its way before the work
        done = await work()
        return await going, done
    finally:
        if not going.done():
            going.cancel()
            await asyncio.wait([going])
        if not going.cancelled():
            going.exception()


class SplitGate:
    """Whether a hybrid recall may run its rankings on two connections at once: the split is
    on, this is the only recall in flight in the service, and the pool can hand out two
    connections without waiting (idle ones, or room to open them).

    A second recall in flight means another request wants a core: the split would take CPU
    (three statements) from it, so it runs the one statement."""

    def __init__(self, pool: asyncpg.Pool, enabled: bool) -> None:
        self._pool = pool
        self._enabled = enabled
        self._in_flight = 0

    @contextmanager
    def recall(self) -> Iterator[None]:
        """Count one recall in flight for as long as the block runs."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def open(self) -> bool:
        """Whether the recall now in flight, alone, may split."""
        if not self._enabled or self._in_flight > 1:
            return False
        busy = self._pool.get_size() - self._pool.get_idle_size()
        return self._pool.get_max_size() - busy >= SPLIT_CONNECTIONS


def ranking_statement(ctes: Sequence[str], ranking: Ranking) -> str:
    """``ranking`` as a statement of its own: (namespace, id, score), best first."""
    prefix = "WITH " + ",\n".join(ctes) if ctes else ""
    return f"""{prefix}
        SELECT namespace, id, score FROM ({ranking.select}) AS ranked ORDER BY rank"""


def given_ranking(params: SqlParams, scope: Scope, rows: RankedRows) -> Ranking:
    """A ranking a ``ranking_statement`` returned in ``scope``, bound as arrays (``bound_rows``):
    (namespace, id, score, rank), its rank the row's place in ``rows``."""
    return Ranking(
        ctes=(),
        select=f"""
            SELECT namespace, id, score, rank
            FROM {bound_rows(params, scope, rows)} AS given (namespace, id, score, rank)
        """,
    )


def fused_statement(
    params: SqlParams,
    scope: Scope,
    rankings: tuple[RankedRows, RankedRows],
    fusion: Fusion,
    query: str,
    limit: str,
    embedding: str,
) -> str:
    """The third statement: the vector and keyword ``rankings`` fused as the one statement
    fuses them, the best ``limit`` still in ``scope`` read whole (a candidate may have left it
    since its ranking ran: ``fused_hits``' recheck), and the pending count (``statement``)."""
    vector, keyword = rankings
    ranking = fused(
        given_ranking(params, scope, vector), given_ranking(params, scope, keyword), fusion
    )
    return statement([], scope, fused_hits(scope, ranking, query, limit, embedding, recheck=True))
