"""What a process's caches of namespaces share (``recall.vector_cache``, the vector copies;
``recall.keyword_cache``, the keyword postings): an entry per namespace, read whole the first
time a recall asks for it and kept fresh in the background, within a budget of bytes.

- **Loaded in the background.** A recall that finds no entry starts its load and is served
  without the cache meanwhile; an entry used is refreshed (what changed since its snapshot read
  in) every ``REFRESH_SECONDS`` while recalls ask for it, each load or refresh one task per
  key at a time.
- **Within a budget.** The entries hold at most ``max_bytes``; the least recently used go
  first. 0 turns the cache off.
- **Not read again and again.** A load that fails, finds nothing, or whose entry was evicted,
  is not tried again for ``RELOAD_SECONDS``; one that would not fit, for ``TOO_LARGE_SECONDS``:
  a review of the vector cache found a namespace recalled before it had copies never cached, a
  failing load and two namespaces taking turns in too small a budget each read on every
  recall.
- **Off on Citus**, whose shards keep their own transaction ids: the snapshots that date an
  entry are the coordinator's (the cache turns itself off at its first read).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pgrecall.db.errors import database_errors
from pgrecall.db.inspect import on_citus
from pgrecall.errors import PgRecallError

log = logging.getLogger(__name__)

# How often a cached entry reads in what was written since its snapshot, while recalls ask for
# it: until then their statements read that exactly (an index range of what the background
# workers wrote in that time).
REFRESH_SECONDS = 2.0
# An entry whose statements find it out of date is loaded again at most this often (a load
# reads the namespace's copies or postings whole).
RELOAD_SECONDS = 10.0
# A namespace too large for the budget is asked its size again at most this often (a count
# over its copies or postings, which a review found repeated every RELOAD_SECONDS).
TOO_LARGE_SECONDS = 300.0

Connection: TypeAlias = "asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]"
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Entry(Protocol):
    @property
    def size(self) -> int:
        """The bytes the entry holds (its arrays)."""

    @property
    def loaded(self) -> float:
        """time.monotonic() of the load the entry came from."""


E = TypeVar("E", bound=Entry)


class NamespaceCache(abc.ABC, Generic[K, E]):
    """Entries ``E`` by key ``K`` (a namespace, with what else makes them one), at most
    ``max_bytes`` of them; ``_load`` and ``_refresh`` are the cache's own."""

    what = "cache"  # the log's name for it

    def __init__(self, pool: asyncpg.Pool, max_bytes: int) -> None:
        self._pool = pool
        self._max_bytes = max_bytes
        self._entries: dict[K, E] = {}
        self._used: dict[K, float] = {}  # time.monotonic() of the last recall
        self._read: dict[K, float] = {}  # of the statement its snapshot is
        # No load before then: the last one failed, found nothing or too much, or was evicted.
        self._not_before: dict[K, float] = {}
        self._tasks: dict[K, asyncio.Task[None]] = {}
        self._citus: bool | None = None  # asked before the first load

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0

    def _entry(self, key: K, *, stale_after: float | None = None) -> E | None:
        """The entry of ``key`` for a recall, or None (its load then started); a refresh is
        started when the entry was read ``REFRESH_SECONDS`` ago or more, and the entry is not
        used while it was read more than ``stale_after`` seconds ago (what was written since,
        which the statement would read, can be a backlog after an idle spell)."""
        entry = self._entries.get(key)
        if entry is None:
            self._start(key, full=True)
            return None
        now = self._used[key] = time.monotonic()
        if now - self._read[key] >= REFRESH_SECONDS:
            self._start(key, full=False)
        if stale_after is not None and now - self._read[key] > stale_after:
            return None
        return entry

    def _outdated(self, key: K) -> None:
        """A statement found the entry of ``key`` out of date: load it again, unless it was
        loaded less than ``RELOAD_SECONDS`` ago."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.loaded >= RELOAD_SECONDS:
            self._start(key, full=True)

    def _discard(self, key: K) -> None:
        """A statement found the entry of ``key`` out of date, and it cannot serve: it is no
        longer used, and loaded again ``RELOAD_SECONDS`` after its load."""
        entry = self._entries.get(key)
        if entry is not None:
            self._dropped(key)
            self._not_before[key] = entry.loaded + RELOAD_SECONDS
        self._start(key, full=True)

    def _start(self, key: K, *, full: bool) -> None:
        if not self.enabled or key in self._tasks:
            return
        if full and time.monotonic() < self._not_before.get(key, 0.0):
            return
        task = asyncio.create_task(self._load(key) if full else self._refresh(key))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    @abc.abstractmethod
    async def _load(self, key: K) -> None:
        """Read the entry of ``key`` whole (``_kept`` when done, ``_dropped`` if it cannot be)."""

    @abc.abstractmethod
    async def _refresh(self, key: K) -> None:
        """Read in what was written since the entry's snapshot."""

    def _loading(self, key: K) -> None:
        """A load of ``key`` begins: none again for ``RELOAD_SECONDS`` unless it succeeds."""
        self._not_before[key] = time.monotonic() + RELOAD_SECONDS

    async def _fetch(self, key: K, read: Callable[[Connection], Awaitable[T]]) -> T | None:
        """``read`` on a connection of the pool, or None: a failure (logged) or Citus (the cache
        turns itself off)."""
        try:
            with database_errors():
                async with self._pool.acquire() as connection:
                    if self._citus is None:
                        self._citus = await on_citus(connection)
                    if self._citus:
                        self._max_bytes = 0
                        return None
                    return await read(connection)
        except PgRecallError as exc:
            log.warning("%s: reading %r failed: %s", self.what, key, exc)
            return None

    def _kept(self, key: K, entry: E, *, loaded: bool) -> None:
        """``entry`` is the key's now, read just now (``loaded``: by a load)."""
        now = time.monotonic()
        self._entries[key] = entry
        self._read[key] = self._used[key] = now
        if loaded:
            self._not_before.pop(key, None)
        self._evict(keep=key)

    def _fits(self, size: int) -> bool:
        return size <= self._max_bytes

    def _too_large(self, key: K) -> None:
        """The entry of ``key`` would not fit: none, and no load for ``TOO_LARGE_SECONDS``."""
        self._dropped(key)
        self._not_before[key] = time.monotonic() + TOO_LARGE_SECONDS

    def _dropped(self, key: K) -> None:
        self._entries.pop(key, None)
        self._read.pop(key, None)
        self._used.pop(key, None)

    def _evict(self, keep: K) -> None:
        """Drop the least recently used entries until the cache fits ``max_bytes``; one dropped
        is not loaded again for ``RELOAD_SECONDS`` (namespaces taking turns in too small a
        budget would each be read whole on every recall)."""
        total = sum(entry.size for entry in self._entries.values())
        for key in sorted(self._entries, key=lambda k: self._used[k]):
            if total <= self._max_bytes:
                break
            if key != keep:
                total -= self._entries[key].size
                self._dropped(key)
                self._not_before[key] = time.monotonic() + RELOAD_SECONDS

    async def aclose(self) -> None:
        """Stop the loads in flight (before the pool closes)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
