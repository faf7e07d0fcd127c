"""Replaying idempotent database work across dropped connections, server restarts and
write conflicts (a deadlock or serialization failure rolls the statement back: a replay is
what PostgreSQL asks for)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pgrecall.errors import DatabaseUnavailableError

T = TypeVar("T")
REPLAY_BUDGET_SECONDS = 30.0


async def with_replays(
    operation: Callable[[], Awaitable[T]], *, budget_seconds: float = REPLAY_BUDGET_SECONDS
) -> T:
    """Run ``operation`` (idempotent: a replay must be a no-op), again after a lost connection
    or a write conflict (DatabaseUnavailableError and its DatabaseBusyError), with jittered
    backoff, for at most ``budget_seconds``; the pool hands out fresh connections."""
    started = time.monotonic()
    delay = 0.1
    while True:
        try:
            return await operation()
        except DatabaseUnavailableError:
            if time.monotonic() - started + delay > budget_seconds:
                raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 3.0)
