"""Which plans a pool connection's prepared statements run: PostgreSQL's choice, or generic.

asyncpg prepares every statement, and PostgreSQL plans its first five executions with the
values given (custom plans), then keeps one generic plan when that plan's estimated cost is not
above the custom plans' average. That comparison can tip: in one state of each run of issue
21's switch benchmark PostgreSQL priced the keyword recall's generic plan at 1,415 against its
custom plans' 938 and planned every call again (1.39-1.50x its unmoved copy), and one memory a
call ran 1.16-1.20x (planning the known-memory lookup costs 0.5-0.9 ms). With generic plans
forced every figure of case (b) was within 10% of the copy in all four states
(benchmarks/RESULTS.md, issue 21, session 17). Callers: the exact recall of one small
namespace (``recall/plans.py`` gates it), and remember's lookups of known memories and its
write (``ingest``).

A block run inside ``generic_plans()`` gets its connections from the pool with
``plan_cache_mode = force_generic_plan``; every other acquisition gets them with PostgreSQL's
choice (the mode reset: ``auto`` unless the database or role sets another). The pool's
``setup`` hook (``hand_out``) sets the mode only when it differs from what the connection last
ran, so a run of recalls, or of remembers, costs no round trip; a change costs one (a ``SET``
or ``RESET``). The wish travels in a context variable, which the tasks a block starts
(``asyncio.gather``) inherit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.inspect import on_citus

_GENERIC_WANTED: ContextVar[bool] = ContextVar("pgrecall_generic_plans", default=False)

# RESET: back to the value the database, role or server gives (``auto`` unless set there).
_MODES = {True: "SET plan_cache_mode = force_generic_plan", False: "RESET plan_cache_mode"}


class PlanCacheConnection(asyncpg.Connection):
    """A pool connection that remembers the ``plan_cache_mode`` it was last handed out with."""

    __slots__ = ("_citus", "_generic_plans")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generic_plans = False
        self._citus: bool | None = None  # asked the first time generic plans are wanted

    async def plan_generically(self, wanted: bool) -> None:
        """Force generic plans on this connection, or leave the choice to PostgreSQL. Never on
        Citus: its coordinator plans for the shards from the values ("could not create
        distributed plan" for the known-memory lookup's generic plan)."""
        if wanted and self._citus is None:
            self._citus = await on_citus(self)
        wanted = wanted and not self._citus
        if self._generic_plans != wanted:
            await self.execute(_MODES[wanted])
            self._generic_plans = wanted


@contextmanager
def generic_plans() -> Iterator[None]:
    """Hand out the pool's connections with generic plans forced for as long as the block runs
    (in this task, and in the tasks it starts)."""
    token = _GENERIC_WANTED.set(True)
    try:
        yield
    finally:
        _GENERIC_WANTED.reset(token)


async def hand_out(proxy: PoolConnectionProxy[asyncpg.Record]) -> None:
    """The pool's ``setup``: the connection's ``plan_cache_mode`` set to what the acquiring
    block wants, when it is not already."""
    # The proxy hands every attribute on to the pool's connection, of the class above.
    await cast(PlanCacheConnection, proxy).plan_generically(_GENERIC_WANTED.get())
