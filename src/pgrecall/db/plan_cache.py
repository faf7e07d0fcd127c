"""Which plans a pool connection's prepared statements run: PostgreSQL's choice, generic or
custom.

asyncpg prepares every statement, and PostgreSQL plans its first five executions with the
values given (custom plans), then keeps one generic plan when that plan's estimated cost is not
above the custom plans' average. That comparison can tip: in one state of each run of issue
21's switch benchmark PostgreSQL priced the keyword recall's generic plan at 1,415 against its
custom plans' 938 and planned every call again (1.39-1.50x its unmoved copy), and one memory a
call ran 1.16-1.20x (planning the known-memory lookup costs 0.5-0.9 ms). With generic plans
forced every figure of case (b) was within 10% of the copy in all four states
(benchmarks/RESULTS.md, issue 21, session 17). Callers: the exact recall of one small
namespace (``recall/plans.py`` gates it), the statement reading the winners of a keyword or
hybrid recall from a shortened list (and custom plans for the whole list: a generic plan takes
any list for 10 rows), and remember's lookups of known memories and its write (``ingest``).

A block run inside ``generic_plans()`` (``custom_plans()``) gets its connections from the pool
with ``plan_cache_mode = force_generic_plan`` (``force_custom_plan``); every other acquisition
gets them with PostgreSQL's choice (the mode reset: ``auto`` unless the database or role sets
another). The pool's ``setup`` hook (``hand_out``) sets the mode only when it differs from what
the connection last ran, so a run of small recalls, or of remembers, costs no round trip; a
change costs one (a ``SET`` or ``RESET``): a keyword or hybrid recall of a large namespace pays
two, its winners' statement forced between two left to PostgreSQL. The wish travels in a
context variable, which the tasks a block starts (``asyncio.gather``) inherit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, Literal, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.inspect import on_citus

Plans = Literal["choice", "generic", "custom"]

_WANTED: ContextVar[Plans] = ContextVar("pgrecall_plans", default="choice")

# RESET: back to the value the database, role or server gives (``auto`` unless set there).
_MODES: dict[Plans, str] = {
    "choice": "RESET plan_cache_mode",
    "generic": "SET plan_cache_mode = force_generic_plan",
    "custom": "SET plan_cache_mode = force_custom_plan",
}


class PlanCacheConnection(asyncpg.Connection):
    """A pool connection that remembers the ``plan_cache_mode`` it was last handed out with."""

    __slots__ = ("_citus", "_plans")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: Plans = "choice"
        self._citus: bool | None = None  # asked the first time a mode is forced

    async def plan_as(self, wanted: Plans) -> None:
        """Force generic or custom plans on this connection, or leave the choice to
        PostgreSQL. Never forced on Citus: its coordinator plans for the shards from the values
        ("could not create distributed plan" for the known-memory lookup's generic plan)."""
        if wanted != "choice" and self._citus is None:
            self._citus = await on_citus(self)
        if self._citus:
            wanted = "choice"
        if self._plans != wanted:
            await self.execute(_MODES[wanted])
            self._plans = wanted


@contextmanager
def _planned(wanted: Plans) -> Iterator[None]:
    token = _WANTED.set(wanted)
    try:
        yield
    finally:
        _WANTED.reset(token)


def generic_plans() -> AbstractContextManager[None]:
    """Hand out the pool's connections with generic plans forced for as long as the block runs
    (in this task, and in the tasks it starts)."""
    return _planned("generic")


def custom_plans() -> AbstractContextManager[None]:
    """Hand out the pool's connections with custom plans forced (planned with the values of
    each call) for as long as the block runs: for a statement whose values' sizes decide its
    plan, inside a block that forces generic plans or where PostgreSQL would settle on one."""
    return _planned("custom")


async def hand_out(proxy: PoolConnectionProxy[asyncpg.Record]) -> None:
    """The pool's ``setup``: the connection's ``plan_cache_mode`` set to what the acquiring
    block wants, when it is not already."""
    # The proxy hands every attribute on to the pool's connection, of the class above.
    await cast(PlanCacheConnection, proxy).plan_as(_WANTED.get())
