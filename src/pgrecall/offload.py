"""One policy for CPU work that grows with a request: past a few items, a worker thread.

Everything a process serves shares one event loop, so a request that computes for a second
(re-ranking 1,000 candidates, decoding or rendering 80 MB of memories) holds every other
request, /healthz included, for that second. A hop to a worker thread costs ~35 us, about
what 16 small items take, so smaller work stays in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INLINE_MAX_ITEMS = 16


async def off_loop(items: int, function: Callable[[], T]) -> T:
    """``function()``, in a worker thread when it works on more than INLINE_MAX_ITEMS items."""
    if items <= INLINE_MAX_ITEMS:
        return function()
    return await asyncio.to_thread(function)
